"""supply_version.bookings_version: a second per-cooperative counter, bumped by triggers whenever what
matching reads of bookings changes (a booking entering or leaving the holding states, or a held
booking changing worker or time), so that each process can keep the held bookings in memory too
(app/services/supply.py) and a search needs no per-search read of bookings

Only changes matching sees bump it: a capture, a payment status, a start (accepted -> in_progress) or
a completion (in_progress -> completed) of a held booking do not. As with `version` (0008), the bump
holds the counter's row lock until commit, so bumps follow commit order. INSERT and DELETE are
statement-level (a COPY of a million bookings bumps once per cooperative); UPDATE is row-level with a
WHEN clause, so an update matching does not see costs nothing.

Revision ID: 0010_supply_bookings_version
Revises: 0009_ledger_entry_account_check
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_supply_bookings_version"
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

_PG = [
    # Cooperatives in a fixed order: two statements bumping the same ones never deadlock.
    """
    CREATE FUNCTION supply_bump_bookings(cooperatives uuid[]) RETURNS void LANGUAGE sql AS $$
        INSERT INTO supply_version AS s (cooperative_id, version, bookings_version)
        SELECT DISTINCT c, 0, 1 FROM unnest(cooperatives) AS c WHERE c IS NOT NULL ORDER BY c
        ON CONFLICT (cooperative_id) DO UPDATE SET bookings_version = s.bookings_version + 1
    $$
    """,
    f"""
    CREATE FUNCTION supply_changed_bookings() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM supply_bump_bookings(ARRAY(SELECT DISTINCT cooperative_id FROM old_rows
                                               WHERE status IN {_HOLDING}));
        ELSE
            PERFORM supply_bump_bookings(ARRAY(SELECT DISTINCT cooperative_id FROM new_rows
                                               WHERE status IN {_HOLDING}));
        END IF;
        RETURN NULL;
    END $$
    """,
    # One held booking changed (an acceptance, a cancellation, a refund...): the statement is in
    # the function, so plpgsql keeps its plan for the session.
    """
    CREATE FUNCTION supply_changed_booking() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO supply_version AS s (cooperative_id, version, bookings_version)
        VALUES (NEW.cooperative_id, 0, 1)
        ON CONFLICT (cooperative_id) DO UPDATE SET bookings_version = s.bookings_version + 1;
        IF OLD.cooperative_id IS DISTINCT FROM NEW.cooperative_id THEN
            PERFORM supply_bump_bookings(ARRAY[OLD.cooperative_id]);
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER supply_booking_insert AFTER INSERT ON booking REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_bookings()",
    "CREATE TRIGGER supply_booking_delete AFTER DELETE ON booking REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_bookings()",
    f"CREATE TRIGGER supply_booking_update AFTER UPDATE ON booking FOR EACH ROW WHEN ({_HELD_CHANGED}) "
    "EXECUTE FUNCTION supply_changed_booking()",
]
_PG_DROPS = [
    "DROP TRIGGER IF EXISTS supply_booking_update ON booking",
    "DROP TRIGGER IF EXISTS supply_booking_delete ON booking",
    "DROP TRIGGER IF EXISTS supply_booking_insert ON booking",
    "DROP FUNCTION IF EXISTS supply_changed_booking()",
    "DROP FUNCTION IF EXISTS supply_changed_bookings()",
    "DROP FUNCTION IF EXISTS supply_bump_bookings(uuid[])",
]


def upgrade() -> None:
    with op.batch_alter_table("supply_version") as batch_op:
        batch_op.add_column(sa.Column("bookings_version", sa.BigInteger(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DROPS:
            op.execute(statement)
    with op.batch_alter_table("supply_version") as batch_op:
        batch_op.drop_column("bookings_version")
