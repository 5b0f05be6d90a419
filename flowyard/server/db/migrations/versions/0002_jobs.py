"""jobs, snapshots, blobs, events and log chunks

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flowyard_blobs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_flowyard_blobs")),
    )
    op.create_table(
        "flowyard_snapshots",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowyard_snapshots")),
    )
    op.create_table(
        "flowyard_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("project_uri", sa.Text(), nullable=False),
        sa.Column("entry_point", sa.String(length=255), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("compute", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("runner", sa.JSON(), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("log_size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["flowyard_snapshots.id"],
            name=op.f("fk_flowyard_jobs_snapshot_id_flowyard_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowyard_jobs")),
    )
    with op.batch_alter_table("flowyard_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flowyard_jobs_compute"), ["compute"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flowyard_jobs_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_flowyard_jobs_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flowyard_jobs_submitted_at"), ["submitted_at"], unique=False
        )

    op.create_table(
        "flowyard_job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["flowyard_jobs.id"],
            name=op.f("fk_flowyard_job_events_job_id_flowyard_jobs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowyard_job_events")),
    )
    with op.batch_alter_table("flowyard_job_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flowyard_job_events_job_id"), ["job_id"], unique=False)

    op.create_table(
        "flowyard_log_chunks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["flowyard_jobs.id"],
            name=op.f("fk_flowyard_log_chunks_job_id_flowyard_jobs"),
        ),
        sa.PrimaryKeyConstraint("job_id", "offset", name=op.f("pk_flowyard_log_chunks")),
    )


def downgrade() -> None:
    op.drop_table("flowyard_log_chunks")
    with op.batch_alter_table("flowyard_job_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowyard_job_events_job_id"))

    op.drop_table("flowyard_job_events")
    with op.batch_alter_table("flowyard_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowyard_jobs_submitted_at"))
        batch_op.drop_index(batch_op.f("ix_flowyard_jobs_status"))
        batch_op.drop_index(batch_op.f("ix_flowyard_jobs_experiment_id"))
        batch_op.drop_index(batch_op.f("ix_flowyard_jobs_compute"))

    op.drop_table("flowyard_jobs")
    op.drop_table("flowyard_snapshots")
    op.drop_table("flowyard_blobs")
