"""add dispatch target, decline code and the family's chosen agency

Revision ID: 5d1c0a7e9b21
Revises: 532bfce83ad6
Create Date: 2026-12-05 00:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "5d1c0a7e9b21"
down_revision: str | Sequence[str] | None = "532bfce83ad6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("offer", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decline_code", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=True))
        batch_op.add_column(sa.Column("target_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chosen_agency_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_ticket_chosen_agency_id_agency", "agency", ["chosen_agency_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ticket_chosen_agency_id_agency", type_="foreignkey")
        batch_op.drop_column("chosen_agency_id")

    with op.batch_alter_table("offer", schema=None) as batch_op:
        batch_op.drop_column("target_id")
        batch_op.drop_column("decline_code")
