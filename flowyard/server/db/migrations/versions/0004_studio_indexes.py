"""indexes for the studio's jobs table: each filter, in submission order, with the id

Revision ID: 0004
Revises: 0003

The studio lists jobs newest first, filtered by status, compute, experiment or user, a page at a
time. With the id in each index, SQLite and PostgreSQL find a page's ids (even thousands of rows
deep) from the index alone, and list a filter's distinct values without reading the table.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_flowyard_jobs_submitted_at_id": ["submitted_at", "id"],
    "ix_flowyard_jobs_status_submitted_at": ["status", "submitted_at", "id"],
    "ix_flowyard_jobs_compute_submitted_at": ["compute", "submitted_at", "id"],
    "ix_flowyard_jobs_experiment_id_submitted_at": ["experiment_id", "submitted_at", "id"],
    "ix_flowyard_jobs_user_submitted_at": ["user", "submitted_at", "id"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "flowyard_jobs", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="flowyard_jobs")
