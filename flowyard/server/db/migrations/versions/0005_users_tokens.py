"""users and API tokens (only each token's sha256 is stored)

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flowyard_users",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_flowyard_users")),
    )
    op.create_table(
        "flowyard_tokens",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("user", sa.String(63), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user"],
            ["flowyard_users.name"],
            name=op.f("fk_flowyard_tokens_user_flowyard_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowyard_tokens")),
    )
    op.create_index(op.f("ix_flowyard_tokens_user"), "flowyard_tokens", ["user"])


def downgrade() -> None:
    op.drop_index(op.f("ix_flowyard_tokens_user"), table_name="flowyard_tokens")
    op.drop_table("flowyard_tokens")
    op.drop_table("flowyard_users")
