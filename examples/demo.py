"""The README's main job: a workspace on its embedded defaults, with the example project trained
on it.

Run it with `make demo`. It creates `.demo/workspace` (SQLite and an artifact folder), points
`examples/` at it with `.flowyard/config.json`, starts `flowyard server`, registers a `process`
compute named `cpu-cluster`, trains `examples/sklearn_elasticnet` through
`mlflow.projects.run(..., backend="flowyard")` as the Azure ML samples did — on this machine and
on `cpu-cluster` — prints where to see both runs, and serves until Ctrl-C (`--exit` stops at once).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow

from flowyard import Workspace
from flowyard.client import Client
from flowyard.credentials import credentials_path
from flowyard.errors import FlowyardError, NotFoundError
from flowyard.schemas import ComputeType

EXAMPLES = Path(__file__).resolve().parent
WORKSPACE_DIR = EXAMPLES.parent / ".demo" / "workspace"
FLOWYARD = [sys.executable, "-m", "flowyard.cli"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init_workspace(port: int) -> None:
    args = ["workspace", "init", "--name", "demo", "--url", f"http://127.0.0.1:{port}", "--force"]
    if not (WORKSPACE_DIR / "workspace.json").exists():
        args.insert(2, str(WORKSPACE_DIR))
        subprocess.run([*FLOWYARD, *args], cwd=EXAMPLES, check=True)
    else:
        # The workspace exists from an earlier demo: only point examples/ at it on this port,
        # with an owner token for that URL (made straight in its database, as its owner may).
        from flowyard.credentials import find_token
        from flowyard.server.services.bootstrap import bootstrap_owner
        from flowyard.server.workspace_folder import WorkspaceFolder
        from flowyard.workspace import WorkspaceConfig

        url = f"http://127.0.0.1:{port}"
        WorkspaceConfig(name="demo", url=url, workspace_dir=str(WORKSPACE_DIR)).write(
            EXAMPLES / ".flowyard" / "config.json"
        )
        if find_token(url) is None:
            bootstrap_owner(WorkspaceFolder.load(WORKSPACE_DIR).db_url, url, always=True)


def _wait_for(server: subprocess.Popen[bytes], timeout: float = 180) -> Workspace:
    deadline = time.monotonic() + timeout
    last: FlowyardError | None = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"flowyard server exited with code {server.returncode}")
        try:
            return Workspace.from_config(EXAMPLES)
        except FlowyardError as e:
            last = e
            time.sleep(0.3)
    sys.exit(f"the workspace did not answer within {timeout:.0f} s: {last}")


def _ensure_cpu_cluster(ws: Workspace) -> None:
    with Client(ws.url) as client:
        try:
            client.get_compute("cpu-cluster")
        except NotFoundError:
            client.create_compute("cpu-cluster", ComputeType.PROCESS, max_concurrent_jobs=2)


def _train_example(ws: Workspace) -> list[str]:
    """Train the example as the Azure sample did: on this machine, then on `cpu-cluster`."""
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    urls = []
    for experiment_name, config in [
        ("experiment-with-mlflow-projects", {"USE_CONDA": False}),
        ("train-mlflow-project-amlcompute", {"COMPUTE": "cpu-cluster", "USE_CONDA": False}),
    ]:
        experiment = mlflow.set_experiment(experiment_name)
        run = mlflow.projects.run(
            uri=str(EXAMPLES / "sklearn_elasticnet"),
            parameters={"alpha": 0.3},
            backend="flowyard",
            backend_config=config,
        )
        urls.append(f"{ws.url}/#/experiments/{experiment.experiment_id}/runs/{run.run_id}")
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--exit", action="store_true", help="stop the server when done")
    args = parser.parse_args()

    # SIGTERM (from `timeout`, a supervisor, `kill`) stops the demo's server too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = _pick_port(args.port)
    _init_workspace(port)
    server = subprocess.Popen([*FLOWYARD, "server"], cwd=EXAMPLES, start_new_session=True)
    try:
        ws = _wait_for(server)
        _ensure_cpu_cluster(ws)
        local_url, cluster_url = _train_example(ws)
        print(f"\nWorkspace {ws.name!r} is at {ws.url}")
        print(f"The example trained on this machine: {local_url}")
        print(f"The example trained on cpu-cluster:  {cluster_url}")
        print(
            f"Sign in to the studio at {ws.url}/studio/ with the owner token saved in "
            f"{credentials_path()}"
        )
        if args.exit:
            return
        print("Serving until Ctrl-C.")
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    main()
