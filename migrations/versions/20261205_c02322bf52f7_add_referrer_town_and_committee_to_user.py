"""add referrer town and committee to user

Referrer accounts (advisors and community workers) record the town and the committee they serve; staff
accounts leave both empty.

Revision ID: c02322bf52f7
Revises: 8e1f4c2b7a90
Create Date: 2026-12-05 00:15:48.954234+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "c02322bf52f7"
down_revision: str | Sequence[str] | None = "8e1f4c2b7a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOWN_FOREIGN_KEY = "fk_user_town_code_town"


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("town_code", sqlmodel.sql.sqltypes.AutoString(length=9), nullable=True))
        batch_op.add_column(sa.Column("committee", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_foreign_key(TOWN_FOREIGN_KEY, "town", ["town_code"], ["code"])


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_constraint(TOWN_FOREIGN_KEY, type_="foreignkey")
        batch_op.drop_column("committee")
        batch_op.drop_column("town_code")
