"""add knowledge article tables

Revision ID: 8e1f4c2b7a90
Revises: 5ac7ab10d10c
Create Date: 2026-12-05 00:19:29.273943+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "8e1f4c2b7a90"
down_revision: str | Sequence[str] | None = "5ac7ab10d10c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kbarticle",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=20000), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("checked_on", sa.Date(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("kbarticle", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kbarticle_category"), ["category"], unique=False)

    op.create_table(
        "kbarticleversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("category", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(length=20000), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("checked_on", sa.Date(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("change_note", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("saved_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("saved_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kbarticle.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("article_id", "version", name="uq_kb_article_version"),
    )
    with op.batch_alter_table("kbarticleversion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kbarticleversion_article_id"), ["article_id"], unique=False)

    op.create_table(
        "kbterm",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("term", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("in_title", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["article_id"], ["kbarticle.id"]),
        sa.PrimaryKeyConstraint("article_id", "term"),
    )
    with op.batch_alter_table("kbterm", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_kbterm_term"), ["term"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kbterm", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kbterm_term"))
    op.drop_table("kbterm")
    with op.batch_alter_table("kbarticleversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kbarticleversion_article_id"))
    op.drop_table("kbarticleversion")
    with op.batch_alter_table("kbarticle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kbarticle_category"))
    op.drop_table("kbarticle")
