"""The `flowyard` command as a user types it, with its one-sentence errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.servers import Server, free_port, init_workspace, run_cli


def test_workspace_init_creates_folder_and_config(tmp_path: Path) -> None:
    folder = init_workspace(tmp_path, name="team-a", port=5999)
    assert (folder / "workspace.json").is_file()
    assert (folder / "flowyard.db").is_file()
    assert (folder / "artifacts").is_dir()
    config = json.loads((tmp_path / ".flowyard" / "config.json").read_text())
    assert config == {
        "workspace_name": "team-a",
        "url": "http://127.0.0.1:5999",
        "workspace_dir": str(folder.resolve()),
    }


def test_workspace_init_refuses_to_overwrite(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    again = run_cli("workspace", "init", str(tmp_path / "other"), cwd=tmp_path)
    assert again.returncode != 0
    assert "already exists; pass --force" in again.stderr
    assert not (tmp_path / "other").exists()


def test_workspace_init_rejects_a_bad_name_before_creating(tmp_path: Path) -> None:
    result = run_cli("workspace", "init", str(tmp_path / "ws"), "--name", "no spaces", cwd=tmp_path)
    assert result.returncode != 0
    assert "is not valid" in result.stderr
    assert not (tmp_path / "ws").exists()
    assert not (tmp_path / ".flowyard").exists()


def test_server_reports_a_port_in_use(tmp_path: Path) -> None:
    init_workspace(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("server", "--port", str(port), cwd=tmp_path)
    assert result.returncode != 0
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_server_reports_a_bad_database_url(tmp_path: Path) -> None:
    for url, expected in [
        ("not a url", "is not a SQLAlchemy URL"),
        ("oracle2://x@y/z", "unknown database kind"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", "Cannot use the database"),
    ]:
        result = run_cli(
            "server",
            "--db-url",
            url,
            "--artifacts",
            str(tmp_path / "a"),
            "--port",
            str(free_port()),
            cwd=tmp_path,
        )
        assert result.returncode != 0, url
        assert expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--advertise-url", "--replica-url"])
def test_server_refuses_a_url_runners_cannot_reach(tmp_path: Path, option: str) -> None:
    for url in ("ftp://lb:21", "lb:5000", "http://"):
        result = run_cli(
            "server",
            *("--db-url", f"sqlite:///{tmp_path / 'ws.db'}", "--artifacts", str(tmp_path / "a")),
            *(option, url, "--port", str(free_port())),
            cwd=tmp_path,
        )
        assert result.returncode != 0, url
        assert f"{option} {url!r} is not a URL runners can reach" in result.stderr
        assert not (tmp_path / "ws.db").exists(), "checked before anything is created"


def test_server_without_config_says_what_to_do(tmp_path: Path) -> None:
    result = run_cli("server", cwd=tmp_path)
    assert result.returncode != 0
    assert "flowyard workspace init" in result.stderr
    assert "--workspace DIR" in result.stderr


def test_server_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    init_workspace(tmp_path, port=port)
    server = Server(args=["--workers", "2"], cwd=tmp_path, port=port).start()
    assert server.stop() == 0
    assert server.log is not None
    assert "Finished server process" in server.log.read_text()


def test_workspace_show(sqlite_server: Server, tmp_path: Path) -> None:
    result = run_cli(
        "workspace", "show", cwd=tmp_path, env={"FLOWYARD_WORKSPACE_URL": sqlite_server.url}
    )
    assert result.returncode == 0, result.stderr
    assert "workspace: tests" in result.stdout


def test_a_refused_compute_name_prints_the_field_the_rule_and_the_fix(
    sqlite_server: Server, tmp_path: Path
) -> None:
    result = run_cli(
        "compute",
        "create",
        "BAD_NAME",
        "--type",
        "process",
        cwd=tmp_path,
        env={"FLOWYARD_WORKSPACE_URL": sqlite_server.url},
    )
    assert result.returncode != 0
    assert "answered 422" not in result.stderr
    assert "name: String should match pattern" in result.stderr
    assert "lowercase letters, digits and dashes" in result.stderr
