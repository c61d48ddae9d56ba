"""booking_offer.price_excl_vat_cents: an offer carries its whole price, so that accepting it copies
the offer's terms inside the database in one statement (app/services/bookings.py, accept)

Revision ID: 0006_offer_price_excl_vat
Revises: 0005_sweeper_indexes
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_offer_price_excl_vat"
down_revision: str | None = "0005_sweeper_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("booking_offer") as batch:
        batch.add_column(sa.Column("price_excl_vat_cents", sa.Integer(), nullable=True))
    # Existing offers: rate × the booking's duration, rounded half-up to the cent, exactly as
    # app/services/quotes.price_excl_vat computes it (integers only; both databases divide
    # integers by truncation, and the operands are never negative).
    op.execute(sa.text(
        "UPDATE booking_offer SET price_excl_vat_cents = (hourly_rate_cents * "
        "(SELECT duration_minutes FROM booking WHERE booking.id = booking_offer.booking_id) * 2 + 60) / 120"))
    with op.batch_alter_table("booking_offer") as batch:
        batch.alter_column("price_excl_vat_cents", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("booking_offer") as batch:
        batch.drop_column("price_excl_vat_cents")
