"""The README's main command, `make demo`, does what the README says (run on a copy of
examples/, so the checkout stays clean)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.servers import Server, free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_trains_the_example_and_prints_its_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples, ignore=shutil.ignore_patterns(".flowyard", "__pycache__"))
    port = free_port()
    result = subprocess.run(
        [sys.executable, str(examples / "demo.py"), "--port", str(port), "--exit"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"trained on this machine: (http://\S+/runs/(\w+))", result.stdout)
    assert match, result.stdout
    cluster = re.search(r"trained on cpu-cluster: +(http://\S+/runs/(\w+))", result.stdout)
    assert cluster, result.stdout
    assert (tmp_path / ".demo" / "workspace" / "flowyard.db").is_file()
    assert "ElasticNet(alpha=0.3, l1_ratio=0.5)" in result.stdout
    # The server stopped with the demo; its database keeps the finished run.
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
        raise AssertionError("the demo left its server running")
    except httpx.ConnectError:
        pass
    # The workspace's owner token, saved privately in the demo user's config, reads it back.
    credentials = tmp_path / ".config" / "flowyard" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    (token,) = json.loads(credentials.read_text())["tokens"].values()
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    # Read the run back through a fresh server on the demo's workspace.
    server = Server(
        args=["--workspace", str(tmp_path / ".demo" / "workspace")], cwd=tmp_path
    ).start()
    try:
        for run_id in (match.group(2), cluster.group(2)):
            run = MlflowClient(server.url).get_run(run_id)
            assert run.info.status == "FINISHED"
            assert run.data.params["alpha"] == "0.3"
        assert (
            MlflowClient(server.url).get_run(cluster.group(2)).data.tags["flowyard.compute"]
            == "cpu-cluster"
        )
    finally:
        server.stop()
