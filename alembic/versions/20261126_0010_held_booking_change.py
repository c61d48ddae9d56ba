"""held_booking_change: which transactions changed what matching reads of a cooperative's bookings, so
that each process can keep the held bookings in memory (app/services/supply.py) and a search needs no
per-search read of bookings

A row (cooperative, transaction id) is written, by triggers, in the same transaction as any change
matching sees: a booking entering or leaving the holding states, or a held booking changing worker or
time. A start, a completion or a capture of a held booking writes nothing. A process that loaded the
held bookings at snapshot S knows it is up to date while no row of its cooperative, from a transaction
S did not see, is visible now (`pg_visible_in_snapshot`): exact in commit order, with no counter to
update and so no row lock held by every acceptance until its commit (a per-cooperative counter did
that, and serialized concurrent acceptances of a cooperative: measured +400 µs of PostgreSQL CPU per
acceptance under load). Rows are only inserted (ON CONFLICT DO NOTHING: one per cooperative and
transaction); the sweeper deletes those older than a day (app/background.py), and a process reloads
its held bookings at least every ten minutes, so it never needs a deleted row.

INSERT and DELETE are statement-level (a COPY of a million bookings writes one row per
cooperative); UPDATE is row-level with a WHEN clause, so an update matching does not see costs
nothing.

Revision ID: 0010_held_booking_change
Revises: 0009_ledger_entry_account_check
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_held_booking_change"
down_revision: str | None = "0009_ledger_entry_account_check"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# app/models/marketplace.py HOLDING_STATUSES (written out: a migration must not change with the code).
_HOLDING = "('accepted', 'in_progress', 'completed')"
_HELD_CHANGED = (
    f"(OLD.status IN {_HOLDING}) IS DISTINCT FROM (NEW.status IN {_HOLDING}) "
    f"OR (NEW.status IN {_HOLDING} AND (OLD.worker_member_id IS DISTINCT FROM NEW.worker_member_id "
    "OR OLD.starts_at IS DISTINCT FROM NEW.starts_at OR OLD.ends_at IS DISTINCT FROM NEW.ends_at "
    "OR OLD.duration_minutes IS DISTINCT FROM NEW.duration_minutes OR OLD.cooperative_id IS DISTINCT FROM "
    "NEW.cooperative_id))"
)
_XACT = "pg_current_xact_id()::text::bigint"

_PG = [
    f"""
    CREATE FUNCTION held_bookings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO held_booking_change (cooperative_id, xact, at)
            SELECT DISTINCT cooperative_id, {_XACT}, now() FROM old_rows WHERE status IN {_HOLDING}
            ON CONFLICT DO NOTHING;
        ELSE
            INSERT INTO held_booking_change (cooperative_id, xact, at)
            SELECT DISTINCT cooperative_id, {_XACT}, now() FROM new_rows WHERE status IN {_HOLDING}
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$
    """,
    f"""
    CREATE FUNCTION held_booking_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO held_booking_change (cooperative_id, xact, at) VALUES (NEW.cooperative_id, {_XACT}, now())
        ON CONFLICT DO NOTHING;
        IF OLD.cooperative_id IS DISTINCT FROM NEW.cooperative_id THEN
            INSERT INTO held_booking_change (cooperative_id, xact, at) VALUES (OLD.cooperative_id, {_XACT}, now())
            ON CONFLICT DO NOTHING;
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER held_booking_insert AFTER INSERT ON booking REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION held_bookings_changed()",
    "CREATE TRIGGER held_booking_delete AFTER DELETE ON booking REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION held_bookings_changed()",
    f"CREATE TRIGGER held_booking_update AFTER UPDATE ON booking FOR EACH ROW WHEN ({_HELD_CHANGED}) "
    "EXECUTE FUNCTION held_booking_changed()",
]
_PG_DROPS = [
    "DROP TRIGGER IF EXISTS held_booking_update ON booking",
    "DROP TRIGGER IF EXISTS held_booking_delete ON booking",
    "DROP TRIGGER IF EXISTS held_booking_insert ON booking",
    "DROP FUNCTION IF EXISTS held_booking_changed()",
    "DROP FUNCTION IF EXISTS held_bookings_changed()",
]


def upgrade() -> None:
    op.create_table(
        "held_booking_change",
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("xact", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cooperative_id", "xact", name=op.f("pk_held_booking_change")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DROPS:
            op.execute(statement)
    op.drop_table("held_booking_change")
