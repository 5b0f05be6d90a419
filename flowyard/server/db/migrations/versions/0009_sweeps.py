"""sweeps: a sweep's row beside its job, and the columns that tie trials to their sweep

Revision ID: 0009
Revises: 0008

A sweep is a job of kind `sweep` (it takes no slot on its compute: the workspace's sweep
controller runs it) with a row in `flowyard_sweeps` for its spec and controller lease; each trial
is a job of kind `run` with its sweep and its Optuna trial number, unique together, so no trial
is ever submitted twice. `cancel_reason` keeps why a job was asked to stop (a pruned trial's
policy and numbers), which its final event then says. Optuna's own tables are Optuna's: its
storage creates them (`flowyard.server.db.studies`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flowyard_jobs") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default=sa.text("'run'"))
        )
        batch.add_column(sa.Column("sweep_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("trial_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.Text(), nullable=True))
        batch.create_index(op.f("ix_flowyard_jobs_sweep_id"), ["sweep_id"])
        batch.create_unique_constraint(
            op.f("uq_flowyard_jobs_sweep_id"), ["sweep_id", "trial_number"]
        )
    op.create_table(
        "flowyard_sweeps",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("best_trial_id", sa.String(32), nullable=True),
        sa.Column("best_value", sa.Float(), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["id"], ["flowyard_jobs.id"], name=op.f("fk_flowyard_sweeps_id_flowyard_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowyard_sweeps")),
    )


def downgrade() -> None:
    op.drop_table("flowyard_sweeps")
    with op.batch_alter_table("flowyard_jobs") as batch:
        batch.drop_constraint(op.f("uq_flowyard_jobs_sweep_id"), type_="unique")
        batch.drop_index(op.f("ix_flowyard_jobs_sweep_id"))
        for column in ("cancel_reason", "trial_number", "sweep_id", "kind"):
            batch.drop_column(column)
