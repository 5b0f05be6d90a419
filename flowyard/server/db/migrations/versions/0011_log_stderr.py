"""which bytes of each log chunk the job's stderr wrote

Revision ID: 0011
Revises: 0010

The runner reads a job's stdout and stderr apart and says, with each piece of log it appends,
which byte ranges of it came from stderr (flowyard/log_ranges.py); the chunk keeps them, relative
to its offset, for the studio to mark those lines. The log's bytes stay as they were. A chunk
stored before (NULL), or holding no stderr, is stdout throughout.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flowyard_log_chunks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stderr", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flowyard_log_chunks", schema=None) as batch_op:
        batch_op.drop_column("stderr")
