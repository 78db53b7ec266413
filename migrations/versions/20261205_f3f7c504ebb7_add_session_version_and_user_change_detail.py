"""add user session version and user change detail

`user.session_version` is stored in every login session; a password reset or a deactivation raises it,
which ends the sessions opened before. `userchange.detail` names the token a `token_revoked` row revoked.

Deactivating a user now revokes its API tokens. Tokens of users deactivated before this revision are
revoked here, at upgrade time, so that no inactive user keeps a live token and activating such a user
later does not bring one back. These revocations have no userchange row, because no admin made them;
`hotline tokens list` shows them with the instant of the upgrade.

Revision ID: f3f7c504ebb7
Revises: 7b2e4d1c9a30
Create Date: 2026-12-05 03:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (SQLModel column types as sqlmodel.sql.sqltypes.*)
from alembic import op

revision: str = "f3f7c504ebb7"
down_revision: str | Sequence[str] | None = "7b2e4d1c9a30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.alter_column("session_version", server_default=None)

    with op.batch_alter_table("userchange", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))

    _revoke_tokens_of_inactive_users()


def _revoke_tokens_of_inactive_users() -> None:
    user = sa.table("user", sa.column("id", sa.Integer()), sa.column("active", sa.Boolean()))
    token = sa.table("apitoken", sa.column("user_id", sa.Integer()),
                     sa.column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime()))
    inactive = sa.select(user.c.id).where(user.c.active.is_(False))
    op.execute(
        token.update().where(token.c.revoked_at.is_(None)).where(token.c.user_id.in_(inactive))
        .values(revoked_at=datetime.now(UTC))
    )


def downgrade() -> None:
    # Tokens revoked by the upgrade stay revoked: nothing records which ones they were.
    with op.batch_alter_table("userchange", schema=None) as batch_op:
        batch_op.drop_column("detail")

    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("session_version")
