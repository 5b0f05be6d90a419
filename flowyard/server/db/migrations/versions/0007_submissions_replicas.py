"""a job's submission key, unique per user; the replicas serving the workspace

Revision ID: 0007
Revises: 0006

A client that sent a submission and heard nothing back (a timeout, a replica killed mid-request)
sends it again with the same key and gets the job the first one made, not a second job. Every
server process records where runners can reach it, so a runner whose replica is away tries the
others.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flowyard_jobs", sa.Column("submission_key", sa.String(64), nullable=True))
    # NULLs never collide: jobs submitted without a key (older clients, re-runs) are not limited.
    op.create_index(
        "uq_flowyard_jobs_user_submission_key",
        "flowyard_jobs",
        ["user", "submission_key"],
        unique=True,
    )
    op.create_table(
        "flowyard_replicas",
        sa.Column("url", sa.String(512), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("url", name="pk_flowyard_replicas"),
    )


def downgrade() -> None:
    op.drop_table("flowyard_replicas")
    op.drop_index("uq_flowyard_jobs_user_submission_key", table_name="flowyard_jobs")
    op.drop_column("flowyard_jobs", "submission_key")
