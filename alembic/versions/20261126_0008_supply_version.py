"""supply_version: a per-cooperative counter bumped by triggers whenever what matching reads from
members, accounts, offerings or availability changes (the in-memory supply index checks it on every
search, app/services/supply.py); an index of each cooperative's bookings by start time; bookings
span at most 12 hours (PostgreSQL checks it: the index's overlap search relies on it)

Revision ID: 0008_supply_version
Revises: 0007_one_open_appeal
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_supply_version"
down_revision: str | None = "0007_one_open_appeal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The member columns matching reads (app/services/matching.py, app/services/supply.py).
_MEMBER_COLUMNS = ("cooperative_id", "user_id", "stage", "suspended", "lat", "lon", "radius_km", "rating_sum",
                   "rating_count", "fixed_monthly_gross_cents")
_CHANGED = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _MEMBER_COLUMNS)

# One bump per statement and cooperative, in a fixed order (two statements bumping the same
# cooperatives never deadlock). The bump holds the counter's row lock until commit, so versions
# are taken in commit order.
_PG = [
    """
    CREATE FUNCTION supply_bump(cooperatives uuid[]) RETURNS void LANGUAGE sql AS $$
        INSERT INTO supply_version (cooperative_id, version)
        SELECT DISTINCT c, 1 FROM unnest(cooperatives) AS c WHERE c IS NOT NULL ORDER BY c
        ON CONFLICT (cooperative_id) DO UPDATE SET version = supply_version.version + 1
    $$
    """,
    # Rows of tables that carry cooperative_id (member, offering): from the transition table.
    """
    CREATE FUNCTION supply_changed_rows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM supply_bump(ARRAY(SELECT cooperative_id FROM old_rows));
        ELSE
            PERFORM supply_bump(ARRAY(SELECT cooperative_id FROM new_rows));
        END IF;
        RETURN NULL;
    END $$
    """,
    # Availability windows: the cooperative of their member.
    """
    CREATE FUNCTION supply_changed_windows() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM supply_bump(ARRAY(SELECT m.cooperative_id FROM old_rows o JOIN member m ON m.id = o.member_id));
        ELSE
            PERFORM supply_bump(ARRAY(SELECT m.cooperative_id FROM new_rows n JOIN member m ON m.id = n.member_id));
        END IF;
        RETURN NULL;
    END $$
    """,
    # One changed row (member, app_user): its cooperative, and the old one if it moved.
    """
    CREATE FUNCTION supply_changed_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM supply_bump(ARRAY[OLD.cooperative_id, NEW.cooperative_id]);
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER supply_member_insert AFTER INSERT ON member REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_rows()",
    "CREATE TRIGGER supply_member_delete AFTER DELETE ON member REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_rows()",
    f"CREATE TRIGGER supply_member_update AFTER UPDATE ON member FOR EACH ROW WHEN ({_CHANGED}) "
    "EXECUTE FUNCTION supply_changed_row()",
    "CREATE TRIGGER supply_user_update AFTER UPDATE ON app_user FOR EACH ROW "
    "WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.display_name IS DISTINCT FROM NEW.display_name "
    "OR OLD.cooperative_id IS DISTINCT FROM NEW.cooperative_id) EXECUTE FUNCTION supply_changed_row()",
    "CREATE TRIGGER supply_offering_insert AFTER INSERT ON offering REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_rows()",
    "CREATE TRIGGER supply_offering_update AFTER UPDATE ON offering REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_rows()",
    "CREATE TRIGGER supply_offering_delete AFTER DELETE ON offering REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_rows()",
    "CREATE TRIGGER supply_window_insert AFTER INSERT ON availability_window REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_windows()",
    "CREATE TRIGGER supply_window_update AFTER UPDATE ON availability_window REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_windows()",
    "CREATE TRIGGER supply_window_delete AFTER DELETE ON availability_window REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION supply_changed_windows()",
    # NOT VALID then VALIDATE: existing rows are checked without blocking writes for long.
    "ALTER TABLE booking ADD CONSTRAINT ck_booking_span_at_most_12h "
    "CHECK (ends_at - starts_at <= interval '12 hours') NOT VALID",
    "ALTER TABLE booking VALIDATE CONSTRAINT ck_booking_span_at_most_12h",
]
_PG_DROPS = [
    "ALTER TABLE booking DROP CONSTRAINT IF EXISTS ck_booking_span_at_most_12h",
    *(f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table in (
        ("supply_window_delete", "availability_window"), ("supply_window_update", "availability_window"),
        ("supply_window_insert", "availability_window"), ("supply_offering_delete", "offering"),
        ("supply_offering_update", "offering"), ("supply_offering_insert", "offering"),
        ("supply_user_update", "app_user"), ("supply_member_update", "member"), ("supply_member_delete", "member"),
        ("supply_member_insert", "member"))),
    "DROP FUNCTION IF EXISTS supply_changed_row()",
    "DROP FUNCTION IF EXISTS supply_changed_windows()",
    "DROP FUNCTION IF EXISTS supply_changed_rows()",
    "DROP FUNCTION IF EXISTS supply_bump(uuid[])",
]


def upgrade() -> None:
    op.create_table(
        "supply_version",
        sa.Column("cooperative_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["cooperative_id"], ["cooperative.id"],
                                name=op.f("fk_supply_version_cooperative_id_cooperative")),
        sa.PrimaryKeyConstraint("cooperative_id", name=op.f("pk_supply_version")),
    )
    op.create_index("ix_booking_cooperative_id_starts_at", "booking", ["cooperative_id", "starts_at"],
                    postgresql_include=["status", "worker_member_id", "ends_at", "duration_minutes"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DROPS:
            op.execute(statement)
    op.drop_index("ix_booking_cooperative_id_starts_at", table_name="booking")
    op.drop_table("supply_version")
