"""which blobs each snapshot refers to, and when blobs and snapshots were last used: what the
garbage collection counts references with

Revision ID: 0008
Revises: 0007

A blob is kept while a snapshot refers to it, or while a submission may be about to (it was
asked about, uploaded or named within the collector's grace period); a snapshot while a job
refers to it, or within the grace period. ``flowyard_snapshot_blobs`` is read from each
snapshot's manifest here, once; the server writes it with every new snapshot.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

snapshots = sa.table(
    "flowyard_snapshots", sa.column("id", sa.String), sa.column("manifest", sa.JSON)
)
_BATCH = 500


def upgrade() -> None:
    for table in ("flowyard_blobs", "flowyard_snapshots"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("used_at", sa.DateTime(timezone=True), nullable=True))
        op.execute(f"UPDATE {table} SET used_at = created_at")
        with op.batch_alter_table(table) as batch:
            batch.alter_column("used_at", nullable=False)
    op.create_table(
        "flowyard_snapshot_blobs",
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["flowyard_snapshots.id"],
            name=op.f("fk_flowyard_snapshot_blobs_snapshot_id_flowyard_snapshots"),
        ),
        sa.PrimaryKeyConstraint("snapshot_id", "digest", name=op.f("pk_flowyard_snapshot_blobs")),
    )
    op.create_index(
        op.f("ix_flowyard_snapshot_blobs_digest"), "flowyard_snapshot_blobs", ["digest"]
    )
    op.create_index(op.f("ix_flowyard_jobs_snapshot_id"), "flowyard_jobs", ["snapshot_id"])
    connection = op.get_bind()
    refs = sa.table(
        "flowyard_snapshot_blobs",
        sa.column("snapshot_id", sa.String),
        sa.column("digest", sa.String),
    )
    rows: list[dict[str, str]] = []
    for sid, manifest in connection.execute(sa.select(snapshots.c.id, snapshots.c.manifest)):
        digests = {f["digest"] for f in manifest or [] if isinstance(f, dict) and "digest" in f}
        rows.extend({"snapshot_id": sid, "digest": d} for d in sorted(digests))
        if len(rows) >= _BATCH:
            connection.execute(sa.insert(refs), rows)
            rows = []
    if rows:
        connection.execute(sa.insert(refs), rows)


def downgrade() -> None:
    op.drop_index(op.f("ix_flowyard_jobs_snapshot_id"), table_name="flowyard_jobs")
    op.drop_index(op.f("ix_flowyard_snapshot_blobs_digest"), table_name="flowyard_snapshot_blobs")
    op.drop_table("flowyard_snapshot_blobs")
    for table in ("flowyard_blobs", "flowyard_snapshots"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("used_at")
