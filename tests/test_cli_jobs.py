"""`flowyard run` and `flowyard job ...` as a user types them."""

from __future__ import annotations

from pathlib import Path

from tests.factories import make_project
from tests.servers import Server, run_cli


def test_run_follows_the_log_and_exits_with_the_result(
    sqlite_server: Server, tmp_path: Path
) -> None:
    env = {"FLOWYARD_WORKSPACE_URL": sqlite_server.url, "XDG_CACHE_HOME": str(tmp_path / "c")}
    good = make_project(tmp_path / "good", "import sys\nprint('alpha is', sys.argv[2])\n")
    result = run_cli(
        "run", str(good), "-P", "alpha=0.7", "--experiment", "cli-runs", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "alpha is 0.7" in result.stdout
    assert "completed" in result.stdout
    run_id = result.stdout.split("Job ", 1)[1].split(" ", 1)[0]

    listed = run_cli("job", "list", cwd=tmp_path, env=env)
    assert run_id in listed.stdout and "completed" in listed.stdout
    shown = run_cli("job", "show", run_id, cwd=tmp_path, env=env)
    assert "preparing" in shown.stdout and "running" in shown.stdout
    logs = run_cli("job", "logs", run_id, cwd=tmp_path, env=env)
    assert "alpha is 0.7" in logs.stdout

    bad = make_project(tmp_path / "bad", "raise SystemExit('no good')\n")
    failed = run_cli("run", str(bad), "--experiment", "cli-runs", cwd=tmp_path, env=env)
    assert failed.returncode == 1
    assert "failed" in failed.stdout

    missing = run_cli("run", str(good), "-P", "alpha", cwd=tmp_path, env=env)
    assert missing.returncode != 0
    assert "-P 'alpha' is not NAME=VALUE" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_job_cancel_from_the_cli(sqlite_server: Server, tmp_path: Path) -> None:
    env = {"FLOWYARD_WORKSPACE_URL": sqlite_server.url, "XDG_CACHE_HOME": str(tmp_path / "c")}
    slow = make_project(
        tmp_path / "slow", "import time\nprint('up', flush=True)\ntime.sleep(300)\n"
    )
    submitted = run_cli("run", str(slow), "--detach", cwd=tmp_path, env=env)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip().splitlines()[-1]
    canceled = run_cli("job", "cancel", run_id, cwd=tmp_path, env=env)
    assert canceled.returncode == 0, canceled.stderr
    assert f"{run_id}: canceled" in canceled.stdout


def test_run_takes_every_backend_config_key(sqlite_server: Server, tmp_path: Path) -> None:
    """`mlflow run`'s flags, a backend-config file, and each key as an option overriding it."""
    import json

    from flowyard.client import Client

    env = {
        "FLOWYARD_WORKSPACE_URL": sqlite_server.url,
        "XDG_CACHE_HOME": str(tmp_path / "c"),
        "API_KEY": "s3cr3t-value",
    }
    project = make_project(
        tmp_path / "p",
        "import os\nprint('plain', os.environ['PLAIN'], 'key', os.environ['API_KEY'])\n",
    )
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"COMPUTE": "local", "TIMEOUT": 5, "TAGS": {"team": "a"}}))
    result = run_cli(
        *("run", str(project), "-e", "main", "-P", "alpha=0.1", "-c", str(config)),
        *("--experiment-name", "cli-keys", "--run-name", "keys", "--timeout", "60"),
        *("--env", "PLAIN=yes", "--secret-env", "API_KEY", "--tag", "team=b"),
        *("--priority", "3", "--max-retries", "1", "--no-use-conda", "--no-stream"),
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "plain yes" not in result.stdout  # --no-stream: the log is not printed
    run_id = result.stdout.split("Job ", 1)[1].split(" ", 1)[0]
    job = Client(sqlite_server.url).get_job(run_id)
    assert job.options.timeout == 60
    assert job.options.env_vars == {"PLAIN": "yes"}
    assert job.secret_env_names == ["API_KEY"]
    assert job.max_retries == 1
    assert job.priority == 3
    logs = run_cli("job", "logs", run_id, cwd=tmp_path, env=env)
    assert "plain yes key ***" in logs.stdout

    unset = run_cli("run", str(project), "--secret-env", "NOT_SET_ANYWHERE", cwd=tmp_path, env=env)
    assert unset.returncode != 0
    assert "no variable NOT_SET_ANYWHERE is set here" in unset.stderr
