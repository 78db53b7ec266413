"""widen user.role to fit the referrer role names

Revision ID: 7b2e4d1c9a30
Revises: 50373bec3ca0
Create Date: 2026-12-05 01:50:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlmodel  # noqa: F401  (SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "7b2e4d1c9a30"
down_revision: str | Sequence[str] | None = "50373bec3ca0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # "assistance_advisor" has 18 characters; PostgreSQL rejected it in a column of 16.
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.alter_column("role", existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=24), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.alter_column("role", existing_type=sqlmodel.sql.sqltypes.AutoString(length=24),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=16), existing_nullable=False)
