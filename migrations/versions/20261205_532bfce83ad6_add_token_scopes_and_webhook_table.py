"""add token scopes and webhook table

Source tokens made before scopes existed keep what they could do: referrals:write and referrals:read.

Revision ID: 532bfce83ad6
Revises: 973ed68af074
Create Date: 2026-12-05 00:15:30.488558+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "532bfce83ad6"
down_revision: str | Sequence[str] | None = "973ed68af074"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=False, server_default="[]"))
    op.execute("""UPDATE apitoken SET scopes = '["referrals:write", "referrals:read"]' WHERE source IS NOT NULL""")
    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.alter_column("scopes", server_default=None)

    op.create_table(
        "webhook",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["token_id"],
            ["apitoken.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_id"),
    )
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_source"), ["source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_source"))
    op.drop_table("webhook")

    with op.batch_alter_table("apitoken", schema=None) as batch_op:
        batch_op.drop_column("scopes")
