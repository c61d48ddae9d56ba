"""one open appeal per contested target, one suspension in force per member (partial unique indexes)

The services already check both under row locks; these make the database refuse a second one
whatever writes it.

Revision ID: 0007_one_open_appeal
Revises: 0006_offer_price_excl_vat
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_one_open_appeal"
down_revision: str | None = "0006_offer_price_excl_vat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("status = 'open'")
_IN_FORCE = sa.text("lifted_at IS NULL")


def upgrade() -> None:
    op.create_index("uq_appeal_open_target", "appeal", ["kind", "target_id"], unique=True,
                    postgresql_where=_OPEN, sqlite_where=_OPEN)
    op.create_index("uq_suspension_active_member", "suspension", ["member_id"], unique=True,
                    postgresql_where=_IN_FORCE, sqlite_where=_IN_FORCE)


def downgrade() -> None:
    op.drop_index("uq_suspension_active_member", table_name="suspension")
    op.drop_index("uq_appeal_open_target", table_name="appeal")
