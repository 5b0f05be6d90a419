"""a job's sealed secrets, artifact URI and MAX_RETRIES in columns of their own, out of its options

Revision ID: 0006
Revises: 0005

A job's options held its sealed secret ENV_VARS (stripped by hand from every answer that showed
the options), and the artifact URI and MAX_RETRIES the server reads. Each moves to its own
column; the options keep what the job's runner and re-runs read, as `flowyard.jobspec.JobOptions`
now reads them.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# A table of its own, not the model's: the migration works on the columns as they are here.
jobs = sa.table(
    "flowyard_jobs",
    sa.column("id", sa.String),
    sa.column("options", sa.JSON),
    sa.column("environment", sa.JSON),
    sa.column("artifact_uri", sa.Text),
    sa.column("max_retries", sa.Integer),
    sa.column("secret_env", sa.JSON),
)
MOVED = ("artifact_uri", "max_retries", "secret_env")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    """The options without the moved keys, and without what JobOptions now refuses and older
    versions stored: a TIMEOUT of 0 or less (0 ran without a limit, which no TIMEOUT says;
    less ended at once), ENV_VARS names no process can be given, negative resources."""
    kept = {k: v for k, v in options.items() if k not in MOVED}
    timeout = kept.get("timeout")
    if timeout is not None and not (_number(timeout) and timeout > 0):
        kept["timeout"] = None
    if isinstance(kept.get("env_vars"), dict):
        kept["env_vars"] = {k: v for k, v in kept["env_vars"].items() if k and "=" not in k}
    if isinstance(kept.get("resources"), dict):
        kept["resources"] = {
            k: v for k, v in kept["resources"].items() if not (_number(v) and v < 0)
        }
    return kept


def _environment(environment: dict[str, Any]) -> dict[str, Any]:
    """The environment with a manager EnvironmentSpec knows: the runner ran any other in the
    compute's own Python, as `local` says."""
    if environment.get("manager", "local") in ("local", "uv"):
        return environment
    return {**environment, "manager": "local"}


def _rewrite(rows: list[dict[str, Any]]) -> None:
    if rows:
        op.get_bind().execute(
            jobs.update()
            .where(jobs.c.id == sa.bindparam("job_id"))
            .values(
                options=sa.bindparam("new_options"),
                environment=sa.bindparam("new_environment"),
                artifact_uri=sa.bindparam("new_artifact_uri"),
                max_retries=sa.bindparam("new_max_retries"),
                secret_env=sa.bindparam("new_secret_env"),
            ),
            rows,
        )


def upgrade() -> None:
    with op.batch_alter_table("flowyard_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_retries", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("artifact_uri", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("secret_env", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    found = op.get_bind().execute(sa.select(jobs.c.id, jobs.c.options, jobs.c.environment)).all()
    _rewrite(
        [
            {
                "job_id": job_id,
                "new_options": _options(options),
                "new_environment": _environment(environment),
                "new_artifact_uri": options.get("artifact_uri"),
                "new_max_retries": options.get("max_retries"),
                "new_secret_env": options.get("secret_env") or {},
            }
            for job_id, options, environment in found
            if _options(options) != options or _environment(environment) != environment
        ]
    )


def downgrade() -> None:
    found = op.get_bind().execute(sa.select(jobs)).mappings().all()
    rows = []
    for row in found:
        moved = {key: row[key] for key in MOVED if row[key] not in (None, {})}
        if moved:
            rows.append(
                {
                    "job_id": row["id"],
                    "new_options": {**row["options"], **moved},
                    "new_environment": row["environment"],
                    "new_artifact_uri": None,
                    "new_max_retries": None,
                    "new_secret_env": {},
                }
            )
    _rewrite(rows)
    with op.batch_alter_table("flowyard_jobs", schema=None) as batch_op:
        batch_op.drop_column("secret_env")
        batch_op.drop_column("artifact_uri")
        batch_op.drop_column("max_retries")
