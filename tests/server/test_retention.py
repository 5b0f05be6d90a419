"""Retention policies: the rule as a pure function, and end to end, where the garbage collection
deletes exactly the ended jobs a policy lets go and keeps the tagged ones and registered models'
source runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.schemas import JobSubmit
from flowyard.server.services.retention import Rules, expired
from flowyard.snapshot import upload
from tests.factories import make_project
from tests.servers import Server, fast_workspace, run_cli, tracking

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _ranked(*ages_days: float | None) -> list[tuple[str, datetime | None]]:
    return [
        (f"j{i}", None if age is None else NOW - timedelta(days=age))
        for i, age in enumerate(ages_days)
    ]


def test_no_rule_keeps_everything() -> None:
    assert expired(_ranked(1, 100, 1000), 0, Rules(), NOW) == []


def test_keep_last_keeps_the_newest_n_across_pages() -> None:
    ranked = _ranked(1, 2, 3, 4)
    assert expired(ranked, 0, Rules(keep_last=2), NOW) == ["j2", "j3"]
    assert expired(ranked[2:], 2, Rules(keep_last=3), NOW) == ["j3"]
    assert expired(ranked, 0, Rules(keep_last=0), NOW) == ["j0", "j1", "j2", "j3"]


def test_keep_days_keeps_what_ended_within_them() -> None:
    assert expired(_ranked(1, 6.9, 7.1, 30), 0, Rules(keep_days=7), NOW) == ["j2", "j3"]


def test_either_rule_keeps_a_job() -> None:
    # j1 is old but among the newest two; j2 is recent though not among them.
    ranked = _ranked(1, 40, 2, 50, 60)
    assert expired(ranked, 0, Rules(keep_days=7, keep_last=2), NOW) == ["j3", "j4"]


def test_a_job_without_an_end_time_is_kept_by_days() -> None:
    assert expired(_ranked(None, 30), 0, Rules(keep_days=7), NOW) == ["j1"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("retention")
    with tracking(fast_workspace(folder, env={"FLOWYARD_GC_INTERVAL_S": "3600"})) as server:
        yield server


def test_gc_deletes_exactly_what_the_policy_lets_go(workspace: Server, tmp_path: Path) -> None:
    tracking = MlflowClient()
    experiment = tracking.create_experiment("retention-kept")
    other = tracking.create_experiment("retention-other")
    with Client(workspace.url) as client:
        snapshot = upload(client, make_project(tmp_path / "p", "print('hi')\n")).id

        def ended_job(experiment_id: str) -> str:
            job = client.submit_job(
                JobSubmit(
                    experiment_id=experiment_id,
                    snapshot_id=snapshot,
                    project_uri=".",
                    entry_point="main",
                    user="ignored",
                )
            )
            client.cancel_job(job.id)
            return job.id

        jobs = [ended_job(experiment) for _ in range(6)]  # oldest first
        others = [ended_job(other) for _ in range(3)]
        tracking.set_tag(jobs[3], "flowyard.keep", "true")
        tracking.create_registered_model("retention-model")
        tracking.create_model_version("retention-model", f"runs:/{jobs[2]}/model", jobs[2])

        client.set_retention(keep_last=2, experiment_id=experiment)
        # The other experiment follows the workspace's policy: jobs ended within a day stay.
        client.set_retention(keep_days=1)
        shown = client.retention()
        assert shown.experiments[experiment].keep_last == 2
        assert shown.workspace.keep_days == 1 and shown.workspace.keep_last is None

        planned = client.gc(dry_run=True)
        assert planned.expired_jobs == 2
        assert {j.id for j in client.list_jobs(experiment_id=experiment)} == set(jobs)
        done = client.gc()

        assert done.expired_jobs == 2 and done.expired_bytes >= 0
        left = {j.id for j in client.list_jobs(experiment_id=experiment)}
        assert left == {jobs[5], jobs[4], jobs[3], jobs[2]}  # newest two, tagged, model source
        for gone in jobs[:2]:
            with pytest.raises(NotFoundError):
                client.get_job(gone)
        assert {j.id for j in client.list_jobs(experiment_id=other)} == set(others)
        assert client.gc().expired_jobs == 0

        client.clear_retention(experiment)
        assert experiment not in client.retention().experiments
        with pytest.raises(NotFoundError):
            client.set_retention(keep_last=1, experiment_id="987654")
        with pytest.raises(InvalidRequestError):
            client.set_retention(keep_days=-1)
        client.set_retention()  # no rule: keep everything
        env = {"FLOWYARD_WORKSPACE_URL": workspace.url}
        cli = run_cli("retention", "set", "--keep-last", "5", cwd=workspace.cwd, env=env)
        assert cli.returncode == 0, cli.stderr
        assert "workspace" in cli.stdout and "5" in cli.stdout
        gc = run_cli("gc", "--dry-run", cwd=workspace.cwd, env=env)
        assert gc.returncode == 0 and "job(s) past retention" in gc.stdout, gc.stderr
        client.set_retention()
