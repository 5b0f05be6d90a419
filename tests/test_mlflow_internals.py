"""Contracts with MLflow's private parts: one test per wrapper in flowyard/mlflow_internals.py and
flowyard/server/mlflow_internals.py, each calling it as Flowyard does and checking what Flowyard
relies on, so an MLflow upgrade that changes one fails here, by name."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import ExecutionException, MlflowException
from sqlalchemy.orm import Session

from flowyard import mlflow_internals
from flowyard.errors import DatabaseError
from flowyard.server import mlflow_internals as server_internals

MLPROJECT = """\
name: contract
python_env: python_env.yaml
entry_points:
  main:
    parameters:
      alpha: {type: float, default: 0.5}
      name: {type: str}
      data: {type: path, default: data.csv}
      where: {type: uri, default: "s3://bucket/key"}
    command: "python train.py --alpha {alpha} --name {name} --data {data}"
  other:
    command: "python other.py"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "MLproject").write_text(MLPROJECT)
    (folder / "python_env.yaml").write_text("python: '3.11'\ndependencies: [numpy]\n")
    (folder / "train.py").write_text("print('hi')\n")
    (folder / "data.csv").write_text("a,b\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "MLproject").write_text("name: sub\nentry_points: {main: {command: ls}}\n")
    return folder


# The client side: mlflow-skinny only.


def test_fetch_project_returns_a_local_folder_and_its_subdirectory(project: Path) -> None:
    assert Path(mlflow_internals.fetch_project(str(project), None)) == project
    assert Path(mlflow_internals.fetch_project(f"{project}#sub", None)) == project / "sub"


def test_fetch_project_refuses_what_it_cannot_fetch(project: Path) -> None:
    with pytest.raises(ExecutionException):
        mlflow_internals.fetch_project(str(project / "missing-subdir-uri"), None)
    with pytest.raises(ExecutionException):
        mlflow_internals.fetch_project(f"{project}#no-such-subdirectory", None)


def test_load_project_gives_the_attributes_flowyard_reads(project: Path) -> None:
    loaded = mlflow_internals.load_project(str(project))
    assert not loaded.docker_env
    assert loaded.env_type == "python_env"
    assert Path(loaded.env_config_path).name == "python_env.yaml"
    entry = loaded.get_entry_point("main")
    assert {k: (p.type, p.default) for k, p in entry.parameters.items()} == {
        "alpha": ("float", 0.5),
        "name": ("str", None),
        "data": ("path", "data.csv"),
        "where": ("uri", "s3://bucket/key"),
    }
    command = entry.compute_command(
        {"alpha": "0.1", "name": "a b", "data": "/d.csv", "extra": "1"}, storage_dir=None
    )
    assert command == "python train.py --alpha 0.1 --name 'a b' --data /d.csv --extra 1"
    assert loaded.get_entry_point("train.py").compute_command({}, storage_dir=None) == (
        "python train.py"
    )
    with pytest.raises(ExecutionException):
        loaded.get_entry_point("nope")


def test_load_project_refuses_a_bad_mlproject(tmp_path: Path) -> None:
    (tmp_path / "MLproject").write_text('name: bad\ndocker_env: {volumes: ["/a:/b"]}\n')
    with pytest.raises((ExecutionException, MlflowException)):
        mlflow_internals.load_project(str(tmp_path))


def test_entry_point_names_lists_the_declared_ones_only(project: Path) -> None:
    loaded = mlflow_internals.load_project(str(project))
    loaded.get_entry_point("train.py")  # a file entry point is not declared
    assert mlflow_internals.entry_point_names(loaded) == ["main", "other"]


def test_validate_parameters_names_the_missing_required_one(project: Path) -> None:
    entry = mlflow_internals.load_project(str(project)).get_entry_point("main")
    with pytest.raises(ExecutionException, match="name"):
        mlflow_internals.validate_parameters(entry, {"alpha": "1"})
    mlflow_internals.validate_parameters(entry, {"name": "x"})


def test_source_name_is_the_path_the_git_checkout_or_the_uri(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project.parent)
    assert mlflow_internals.source_name("project") == str(project)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    assert mlflow_internals.source_name(str(project)) == f"file://{project}"
    assert mlflow_internals.source_name(str(project / "sub")) == f"file://{project}#sub"
    uri = "https://github.com/mlflow/mlflow-example.git"
    assert mlflow_internals.source_name(uri) == uri


def test_entry_point_command_builds_the_commands_mlflow_runs(project: Path, tmp_path: Path) -> None:
    data = project / "data.csv"
    commands = mlflow_internals.entry_point_command(
        str(project), "main", {"name": "x y", "data": f"file://{data}"}, str(tmp_path / "storage")
    )
    assert commands == [f"python train.py --alpha 0.5 --name 'x y' --data {data}"]


def test_entry_point_from_stored_specs_builds_mlflows_command(tmp_path: Path) -> None:
    """A re-run rebuilds its command from the entry point stored at submit."""
    entry = mlflow_internals.entry_point(
        "main", {"alpha": {"type": "float", "default": 0.5}, "n": "int"}, "python t.py {alpha} {n}"
    )
    assert entry.compute_command({"alpha": "0.3", "n": "2"}, str(tmp_path)) == "python t.py 0.3 2"
    assert entry.compute_command({"n": "2", "extra": "a b"}, str(tmp_path)) == (
        "python t.py 0.5 2 --extra 'a b'"
    )
    assert (entry.parameters["n"].type, entry.parameters["alpha"].default) == ("int", 0.5)


def test_local_path_or_none_tells_local_from_remote() -> None:
    assert mlflow_internals.local_path_or_none("data/x.csv") == "data/x.csv"
    assert mlflow_internals.local_path_or_none("file:///tmp/x.csv") == "/tmp/x.csv"
    assert mlflow_internals.local_path_or_none("s3://bucket/x.csv") is None


def test_is_uri_wants_a_scheme() -> None:
    assert mlflow_internals.is_uri("s3://bucket/key")
    assert mlflow_internals.is_uri("file:///tmp/x")
    assert not mlflow_internals.is_uri("plain-name")


def test_the_client_side_needs_no_server_part_of_mlflow(project: Path) -> None:
    # mlflow-skinny comes without MLflow's server dependencies (Flask, SQLAlchemy, alembic): the
    # client-side wrappers must work without them.
    script = f"""
import sys
for name in ("flask", "sqlalchemy", "alembic", "mlflow.server", "flowyard.server"):
    sys.modules[name] = None
from flowyard import mlflow_internals as m
p = m.load_project(m.fetch_project({str(project)!r}, None))
m.validate_parameters(p.get_entry_point("main"), {{"name": "x"}})
m.source_name({str(project)!r}); m.local_path_or_none("x"); m.is_uri("s3://b/k")
print(m.entry_point_names(p))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['main', 'other']"


# The server side: MLflow's store, schema and tables, on a temporary SQLite database.


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path}/mlflow.db")
    yield engine
    engine.dispose()


def _revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _head() -> str:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    head = ScriptDirectory.from_config(_get_alembic_config("sqlite://")).get_current_head()
    assert head
    return head


def test_prepare_tables_creates_mlflow_tables_at_the_newest_schema(engine: sa.Engine) -> None:
    server_internals.prepare_tables(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {"experiments", "runs", "params", "metrics", "latest_metrics", "tags"} <= tables
    assert _revision(engine) == _head()
    server_internals.prepare_tables(engine)  # a second server start changes nothing
    assert _revision(engine) == _head()


def test_prepare_tables_upgrades_an_older_schema(engine: sa.Engine) -> None:
    from alembic import command
    from mlflow.store.db.utils import _get_alembic_config

    server_internals.prepare_tables(engine)
    config = _get_alembic_config(str(engine.url))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    assert _revision(engine) != _head()
    server_internals.prepare_tables(engine)
    assert _revision(engine) == _head()


def test_prepare_tables_refuses_a_schema_newer_than_this_mlflow(engine: sa.Engine) -> None:
    # The pin spans several MLflow versions: a database a newer one upgraded must not be handed
    # to alembic, which fails with "Can't locate revision".
    server_internals.prepare_tables(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeedbeef'"))
    with pytest.raises(DatabaseError, match="f00dfeedbeef"):
        server_internals.prepare_tables(engine)


def test_table_handles_name_columns_mlflow_has(engine: sa.Engine) -> None:
    server_internals.prepare_tables(engine)
    inspector = sa.inspect(engine)
    for table in server_internals.TABLES:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert set(table.c.keys()) <= columns, table.name


@pytest.fixture
def store_with_runs(engine: sa.Engine, tmp_path: Path) -> tuple[Any, str, list[str]]:
    """MLflow's own SQL store on the database, with an experiment and two runs in it."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    server_internals.prepare_tables(engine)
    store = SqlAlchemyStore(str(engine.url), str(tmp_path / "artifacts"))
    experiment_id = store.create_experiment("contract")
    ids = []
    now = int(time.time() * 1000)
    for name in ("b-run", "a-run"):
        run = store.create_run(experiment_id, "me", now, [RunTag("mine", name)], name)
        ids.append(run.info.run_id)
    store.log_batch(
        ids[0],
        metrics=[Metric("loss", 2.0, now, 0), Metric("loss", 1.0, now, 1)],
        params=[Param("alpha", "0.5")],
        tags=[],
    )
    return store, experiment_id, ids


def test_run_reads(engine: sa.Engine, store_with_runs: tuple[Any, str, list[str]]) -> None:
    _store, _experiment_id, (first, second) = store_with_runs
    with Session(engine) as session:
        assert server_internals.run_tags(session, first)["mine"] == "b-run"
        assert server_internals.run_tags(session, first)["mlflow.runName"] == "b-run"
        assert server_internals.run_name(session, first) == "b-run"
        assert server_internals.run_name(session, "no-such-run") is None
        assert server_internals.run_names(session, [first, second, "x"]) == {
            first: "b-run",
            second: "a-run",
        }
        assert server_internals.run_params(session, [first, second]) == {first: {"alpha": "0.5"}}
        assert server_internals.latest_metrics(session, [first, second]) == {
            first: {"loss": (1.0, 1)}
        }


def test_with_run_name_sorts_by_the_run_name(
    engine: sa.Engine, store_with_runs: tuple[Any, str, list[str]]
) -> None:
    _store, _experiment_id, ids = store_with_runs
    ours = sa.table("ours", sa.column("id"))
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE ours (id TEXT)"))
        connection.execute(sa.insert(ours), [{"id": i} for i in [*ids, "no-run"]])
    query, name = server_internals.with_run_name(sa.select(ours.c.id), ours.c.id)
    with Session(engine) as session:
        ordered = list(session.scalars(query.order_by(name.asc().nulls_last())))
    assert ordered == [ids[1], ids[0], "no-run"]


def test_experiment_reads(engine: sa.Engine, store_with_runs: tuple[Any, str, list[str]]) -> None:
    _store, experiment_id, _ids = store_with_runs
    with Session(engine) as session:
        assert server_internals.experiment_names(session)[experiment_id] == "contract"
        assert server_internals.experiment_names(session)["0"] == "Default"
        assert server_internals.experiment_name(session, experiment_id) == "contract"
        assert server_internals.experiment_name(session, "123456") is None


def test_experiment_keys_counts_and_metric_ranges(
    engine: sa.Engine, store_with_runs: tuple[Any, str, list[str]]
) -> None:
    store, experiment_id, (_first, second) = store_with_runs
    now = int(time.time() * 1000)
    store.log_batch(second, metrics=[Metric("loss", 5.0, now, 0)], params=[], tags=[])
    with Session(engine) as session:
        assert server_internals.experiment_keys(session, experiment_id) == (["alpha"], ["loss"])
        assert server_internals.experiment_run_counts(session)[experiment_id] == 2
    # The latest value of each run (1.0, not the first run's 2.0), over the runs selected.
    ranges = server_internals.metric_ranges
    assert ranges(store, experiment_id, "") == {"loss": (1.0, 5.0)}
    assert ranges(store, experiment_id, "params.alpha = '0.5'") == {"loss": (1.0, 1.0)}
    assert ranges(store, experiment_id, "metrics.loss > 2 and tags.mine = 'a-run'") == {
        "loss": (5.0, 5.0)
    }
    assert ranges(store, experiment_id, "attributes.run_name = 'none'") == {}
    with pytest.raises(MlflowException):
        ranges(store, experiment_id, "metrics.loss <")


def test_model_sources_and_tags_of_runs(
    engine: sa.Engine, store_with_runs: tuple[Any, str, list[str]]
) -> None:
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore

    store, _experiment_id, (first, second) = store_with_runs
    store.set_tag(second, RunTag("flowyard.keep", "true"))
    registry = RegistryStore(str(engine.url))
    registry.create_registered_model("contract-model")
    registry.create_model_version("contract-model", f"runs:/{first}/model", first)
    with Session(engine) as session:
        assert server_internals.model_source_runs(session, [first, second]) == {first}
        assert server_internals.runs_tagged(session, [first, second], "flowyard.keep") == {
            second: "true"
        }
    registry.engine.dispose()


def test_hard_deletes_remove_soft_deleted_runs_and_experiments(
    engine: sa.Engine, store_with_runs: tuple[Any, str, list[str]]
) -> None:
    store, experiment_id, (first, second) = store_with_runs
    store.delete_run(first)
    server_internals.hard_delete_run(store, first)
    with pytest.raises(MlflowException, match="not found"):
        store.get_run(first)
    assert store.get_run(second).info.lifecycle_stage == "active"
    store.delete_experiment(experiment_id)
    server_internals.hard_delete_run(store, second)
    server_internals.hard_delete_experiment(store, experiment_id)
    with pytest.raises(MlflowException):
        store.get_experiment(experiment_id)
    with Session(engine) as session:
        assert server_internals.experiment_name(session, experiment_id) is None
        assert server_internals.run_name(session, second) is None


# MLflow's server app is configured through its process's environment and keeps its store for the
# process's life: it is set up once, in a process of its own, as the server does.
SERVER_APP = r"""
import json, sys, time
from pathlib import Path
import sqlalchemy as sa
from flowyard.server import mlflow_internals as m

tmp = Path(sys.argv[1])
url = f"sqlite:///{tmp}/db.sqlite"
m.prepare_tables(sa.create_engine(url))
m.configure_server_app(url, str(tmp / "artifacts"))
app = m.server_app()
store = m.tracking_store()
experiment_id = store.create_experiment("served")
run = store.create_run(experiment_id, "me", int(time.time() * 1000), [], "r")

from fastapi.testclient import TestClient
client = TestClient(app, base_url="http://localhost")
put = client.put("/api/2.0/mlflow-artifacts/artifacts/some/file.txt", content=b"hello")
got = client.get("/api/2.0/mlflow/runs/get", params={"run_id": run.info.run_id})
json.dump({
    "store_is_sql": type(store).__name__ == "SqlAlchemyStore",
    "same_store": m.tracking_store() is store,
    "artifact_uri": run.info.artifact_uri,
    "put": put.status_code,
    "stored": (tmp / "artifacts" / "some" / "file.txt").read_bytes().decode(),
    "rest_run_name": got.json()["run"]["info"]["run_name"],
}, sys.stdout)
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("served")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SERVER_APP), str(tmp)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_tracking_store_is_the_server_apps_sql_store(served: dict[str, Any]) -> None:
    assert served["store_is_sql"]
    assert served["same_store"]
    assert served["rest_run_name"] == "r"  # the app's REST API sees the store's run


def test_configure_server_app_roots_runs_in_the_artifact_proxy(served: dict[str, Any]) -> None:
    assert served["artifact_uri"].startswith("mlflow-artifacts:/")


def test_configure_server_app_serves_artifacts_from_the_destination(
    served: dict[str, Any],
) -> None:
    assert served["put"] == 200
    assert served["stored"] == "hello"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def varied_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    """MLflow's SQL store (SQLite, then PostgreSQL where one answers) with an experiment of runs
    that tie, miss values and hold NaN in every column the experiment table sorts by."""
    from mlflow.entities import RunStatus
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from tests.servers import fresh_postgres_database

    tmp_path = tmp_path_factory.mktemp("orders")
    databases = fresh_postgres_database() if request.param == "postgresql" else None
    url = next(databases) if databases else f"sqlite:///{tmp_path}/mlflow.db"
    engine = sa.create_engine(url)
    server_internals.prepare_tables(engine)
    store = SqlAlchemyStore(url, str(tmp_path / "artifacts"))
    experiment_id = store.create_experiment("orders")
    other = store.create_experiment("other")
    start = 1_700_000_000_000
    for i in range(23):
        # Start times, names, statuses and values repeat, so ties are broken as MLflow does.
        run = store.create_run(
            other if i == 22 else experiment_id, "me", start + (i // 3) * 1000, [], f"r{i % 5}"
        )
        run_id = run.info.run_id
        metrics = (
            [] if i % 4 == 0 else [Metric("loss", float("nan") if i % 7 == 0 else i % 6, 0, 0)]
        )
        params = [] if i % 5 == 0 else [Param("alpha", str(i % 3))]
        tags = [] if i % 6 == 0 else [RunTag("mine", "abc"[i % 3])]
        store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        if i % 3:
            status = RunStatus.FINISHED if i % 2 else RunStatus.FAILED
            store.update_run_info(run_id, status, start + i * 500, None)
    yield store, experiment_id
    store.engine.dispose()
    engine.dispose()
    if databases:
        next(databases, None)


ORDERED_BY = [
    f"{key} {direction}"
    for key in (
        "attributes.start_time",
        "attributes.run_name",
        "attributes.status",
        "attributes.end_time",
        "metrics.`loss`",
        "params.`alpha`",
        "tags.`mine`",
    )
    for direction in ("ASC", "DESC")
]


@pytest.mark.parametrize("order_by", ORDERED_BY)
@pytest.mark.parametrize("filter_string", ["", "params.alpha != '1'", "metrics.loss >= 2"])
def test_page_run_ids_pages_in_mlflows_own_order(
    varied_runs: tuple[Any, str], order_by: str, filter_string: str
) -> None:
    from mlflow.entities import ViewType

    store, experiment_id = varied_runs
    theirs = [
        r.info.run_id
        for r in store.search_runs(
            [experiment_id], filter_string, ViewType.ACTIVE_ONLY, 1000, [order_by]
        )
    ]
    assert len(theirs) > 5
    pages = [
        server_internals.page_run_ids(store, experiment_id, filter_string, order_by, offset, 4)
        for offset in range(0, len(theirs) + 4, 4)
    ]
    assert [i for page in pages for i in page] == theirs
    assert pages[-1] == []


def test_page_run_ids_refuses_what_mlflow_refuses(varied_runs: tuple[Any, str]) -> None:
    store, experiment_id = varied_runs
    for filter_string, order_by in (
        ("metrics.loss <", "attributes.start_time DESC"),
        ("", "datasets.name ASC"),
    ):
        with pytest.raises(MlflowException):
            server_internals.page_run_ids(store, experiment_id, filter_string, order_by, 0, 5)


def test_runs_by_ids_loads_what_get_run_gives(varied_runs: tuple[Any, str]) -> None:
    from mlflow.entities import ViewType

    store, experiment_id = varied_runs
    ids = [r.info.run_id for r in store.search_runs([experiment_id], "", ViewType.ALL, 6)]
    wanted = [ids[3], "no-such-run", ids[0], ids[5]]
    loaded = server_internals.runs_by_ids(store, wanted)
    assert [r.info.run_id for r in loaded] == [ids[3], ids[0], ids[5]]
    for run in loaded:
        theirs = store.get_run(run.info.run_id)
        assert run.info.to_proto() == theirs.info.to_proto()
        assert run.data.params == theirs.data.params
        assert run.data.tags == theirs.data.tags
        assert str(run.data.metrics) == str(theirs.data.metrics)  # NaN == NaN as text
    assert server_internals.runs_by_ids(store, []) == []
