"""A job acts for its submitter with a contributor's rights, end to end: MLflow code inside a job
submitted with ``backend="flowyard"`` does what it does with ``backend="local"`` (experiments,
nested runs, searches, tags, the model registry), its runs are its submitter's and tagged with
the job, and it can neither delete nor make another job's runner calls."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard import Workspace
from flowyard.client import Client
from flowyard.schemas import JobStatus
from flowyard.server.auth.policy import JOB_TAG
from tests.factories import make_project
from tests.security.test_routes import local_job
from tests.server.test_auth import new_token
from tests.servers import Server

LOCAL = {"USE_CONDA": False}

TRAIN = """\
import json, os, sys

import httpx
import mlflow
import mlflow.sklearn
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LinearRegression

own_experiment, new_experiment, model_name, other_job = sys.argv[1:5]
job_run = os.environ["MLFLOW_RUN_ID"]
result = {}

own = mlflow.set_experiment(own_experiment)
with mlflow.start_run() as parent:
    result["parent"] = parent.info.run_id
    children = []
    for i in range(2):
        with mlflow.start_run(nested=True, run_name=f"child-{i}") as child:
            mlflow.log_metric("loss", 1.0 / (i + 1))
            mlflow.set_tag("child", str(i))
            children.append(child.info.run_id)
    result["children"] = children
    mlflow.set_tags({"stage": "trained"})
    model = LinearRegression().fit([[0], [1]], [0, 1])
    info = mlflow.sklearn.log_model(model, name="model", registered_model_name=model_name)
    result["model_version"] = info.registered_model_version
found = mlflow.search_runs(
    experiment_ids=[own.experiment_id],
    filter_string=f"tags.mlflow.parentRunId = '{job_run}'",
)
result["children_found"] = len(found)

new = mlflow.set_experiment(new_experiment)
with mlflow.start_run() as elsewhere:
    mlflow.log_param("where", "a new experiment")
    result["elsewhere"] = elsewhere.info.run_id
    result["new_experiment"] = new.experiment_id

try:
    MlflowClient().delete_run(children[0])
    result["delete run"] = "ok"
except MlflowException as e:
    result["delete run"] = e.get_http_status_code()
url = os.environ["MLFLOW_TRACKING_URI"]
headers = {"Authorization": f"Bearer {os.environ['FLOWYARD_TOKEN']}"}
for call in ("heartbeat", "status"):
    response = httpx.post(
        f"{url}/api/flowyard/v1/jobs/{other_job}/{call}",
        json={"status": "completed"},
        headers=headers,
    )
    result[f"other job's {call}"] = response.status_code

os.makedirs("outputs", exist_ok=True)
with open("outputs/result.json", "w") as f:
    json.dump(result, f)
"""


@pytest.fixture
def contributor(
    sqlite_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """MLflow pointed at the workspace as a new contributor; yields the contributor's name."""
    token = new_token(sqlite_server, "contributor")
    monkeypatch.setenv("FLOWYARD_TOKEN", token)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlflow.set_tracking_uri(Workspace.get(sqlite_server.url).get_mlflow_tracking_uri())
    with Client(sqlite_server.url) as client:
        user = str(client.request("GET", "/whoami")["user"])
    yield user
    mlflow.set_tracking_uri(None)


def test_a_job_does_what_mlflow_code_does_locally_as_its_submitter(
    sqlite_server: Server, contributor: str, tmp_path: Path
) -> None:
    unique = uuid.uuid4().hex[:8]
    own_experiment, new_experiment = f"rights-{unique}", f"rights-new-{unique}"
    model_name = f"rights-model-{unique}"
    experiment_id = mlflow.set_experiment(own_experiment).experiment_id
    other_job, _token = local_job(sqlite_server)  # live: its runner calls would work for it
    with Client(sqlite_server.url) as api:
        other_before = api.get_job(other_job)
    project = make_project(
        tmp_path / "project",
        TRAIN,
        parameters="{own: string, new: string, model: string, other: string}",
        command="python main.py {own} {new} {model} {other}",
    )
    submitted = mlflow.projects.run(
        uri=str(project),
        parameters={
            "own": own_experiment,
            "new": new_experiment,
            "model": model_name,
            "other": other_job,
        },
        backend="flowyard",
        backend_config=LOCAL,
        experiment_id=experiment_id,
    )
    job_id = submitted.run_id
    with Client(sqlite_server.url) as api:
        job = api.get_job(job_id)
        other = api.get_job(other_job)
    assert job.status == JobStatus.COMPLETED, job.events
    assert job.user == contributor
    client = MlflowClient()
    local = client.download_artifacts(job_id, "outputs/result.json", str(tmp_path))
    result = json.loads(Path(local).read_text())

    assert result["parent"] == job_id
    assert result["children_found"] == 2
    assert result["delete run"] == 403  # deleting is an owner's
    assert result["other job's heartbeat"] == 403
    assert result["other job's status"] == 403
    assert other.status == other_before.status and other.heartbeat_at == other_before.heartbeat_at

    created = [*result["children"], result["elsewhere"]]
    for run_id in created:
        run = client.get_run(run_id)
        assert run.info.user_id == contributor, run_id
        assert run.data.tags["mlflow.user"] == contributor
        assert run.data.tags[JOB_TAG] == job_id
        assert run.info.lifecycle_stage == "active"
    assert client.get_run(result["elsewhere"]).info.experiment_id == result["new_experiment"]
    # As docs/access.md says to find them.
    tagged = client.search_runs(
        [experiment_id, result["new_experiment"]], f"tags.flowyard.job = '{job_id}'"
    )
    assert {r.info.run_id for r in tagged} == set(created)
    assert {client.get_run(c).data.tags["mlflow.parentRunId"] for c in result["children"]} == {
        job_id
    }
    assert client.get_run(job_id).data.tags["stage"] == "trained"
    version = client.get_model_version(model_name, result["model_version"])
    assert version.run_id == job_id


def test_a_runner_that_does_not_start_is_reported_with_the_jobs_own_token(
    sqlite_server: Server, contributor: str, tmp_path: Path
) -> None:
    """Reporting the job failed is a runner's call: the plugin makes it with the job's token,
    not the user's (which would be refused, leaving the job waiting for a runner forever)."""
    experiment_id = mlflow.set_experiment(f"no-runner-{uuid.uuid4().hex[:8]}").experiment_id
    blocked = tmp_path / "cache" / "flowyard" / "jobs"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the job folders go, so the runner cannot start")
    project = make_project(tmp_path / "project", "print('never runs')\n")
    with pytest.raises(OSError):
        mlflow.projects.run(
            uri=str(project), backend="flowyard", backend_config=LOCAL, experiment_id=experiment_id
        )
    with Client(sqlite_server.url) as api:
        (job,) = api.list_jobs(experiment_id=experiment_id)
        job = api.get_job(job.id)
    assert job.status == JobStatus.FAILED
    assert "runner did not start" in job.events[-1].reason
