"""the no-overlap exclusion constraint covers the bookings a worker holds now (accepted, in
progress), not completed ones; booking_offer loses an index its unique (booking_id, member_id)
already provides

A completed booking no longer holds its worker's time: one finished early frees the rest of its slot
(the worker can accept a booking offered to them for that time), and the GiST index behind the
constraint keeps only live holdings instead of every booking ever completed (a million in the
benchmark: each acceptance inserted into, and searched, a 100 MB index read from disk). Matching
stays conservative (app/services/matching.py still treats a completed booking's slot as taken).

Revision ID: 0011_live_hold_exclusion
Revises: 0010_held_booking_change
Create Date: 2026-11-26
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0011_live_hold_exclusion"
down_revision: str | None = "0010_held_booking_change"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CONSTRAINT = (
    "ALTER TABLE booking ADD CONSTRAINT ex_booking_worker_no_overlap EXCLUDE USING gist "
    "(worker_member_id WITH =, tstzrange(starts_at, ends_at, '[)') WITH &&) WHERE (status IN {statuses})"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE booking DROP CONSTRAINT ex_booking_worker_no_overlap")
        # app/models/marketplace.py OVERLAP_GUARDED_STATUSES (written out: a migration must not
        # change with the code).
        op.execute(_CONSTRAINT.format(statuses="('accepted', 'in_progress')"))
    # The leading column of uq_booking_offer_booking_id_member_id answers every lookup by booking.
    op.drop_index("ix_booking_offer_booking_id", table_name="booking_offer")


def downgrade() -> None:
    op.create_index("ix_booking_offer_booking_id", "booking_offer", ["booking_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE booking DROP CONSTRAINT ex_booking_worker_no_overlap")
        op.execute(_CONSTRAINT.format(statuses="('accepted', 'in_progress', 'completed')"))
