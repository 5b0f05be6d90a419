"""Snapshots: walking a project, incremental upload to a real workspace, and materializing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException

from flowyard import Workspace, defaults
from flowyard.client import Client
from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.snapshot import (
    SnapshotTooLargeError,
    build_manifest,
    cache_home,
    git_info,
    materialize,
    snapshot_id,
    upload,
)
from tests.factories import make_project as make_mlproject
from tests.servers import Server, run_cli


@pytest.fixture(autouse=True)
def cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "flowyard"


@pytest.fixture
def client(sqlite_server: Server) -> Iterator[Client]:
    with Client(sqlite_server.url) as c:
        yield c


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


def make_project(root: Path) -> Path:
    """A project whose content no other test uploads, so blob counts are exact."""
    tag = uuid.uuid4().hex
    write(
        root,
        {
            "MLproject": f"name: p-{tag}\n",
            "train.py": f"print('{tag}')\n",
            "src/lib/util.py": f"X = '{tag}'\n",
            "data/small.bin": os.urandom(3000),
            "run.sh": f"#!/bin/sh\necho {tag}\n",
            "empty_a.py": "",
        },
    )
    (root / "run.sh").chmod(0o755)
    return root


def paths(root: Path) -> list[str]:
    return [f.path for f in build_manifest(root).files]


def test_ignore_file_precedence(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.csv": "1",
            "b.txt": "2",
            "c.md": "3",
            "keep.py": "4",
            ".flowyardignore": "*.csv\n",
            ".amlignore": "*.txt\n",
            ".gitignore": "*.md\n",
        },
    )
    assert "a.csv" not in paths(tmp_path)
    assert {"b.txt", "c.md", "keep.py"} <= set(paths(tmp_path))
    (tmp_path / ".flowyardignore").unlink()
    assert set(paths(tmp_path)) == {"a.csv", "c.md", "keep.py", ".amlignore", ".gitignore"}
    (tmp_path / ".amlignore").unlink()
    assert set(paths(tmp_path)) == {"a.csv", "b.txt", "keep.py", ".gitignore"}


def test_default_excludes_and_nested_gitignore(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            ".git/HEAD": "ref",
            "mlruns/0/meta.yaml": "x",
            "outputs/model.pkl": "x",
            ".venv/bin/python": "x",
            ".flowyard/config.json": "{}",
            "src/__pycache__/m.cpython-311.pyc": "x",
            "src/outputs/keep.py": "anchored defaults only apply at the top",
            "src/m.py": "x",
            "logs/a.log": "x",
            "logs/keep.log": "x",
            "logs/.gitignore": "!keep.log\n",
            ".gitignore": "*.log\n!outputs/\n",
        },
    )
    assert paths(tmp_path) == [
        ".gitignore",
        "logs/.gitignore",
        "logs/keep.log",
        "src/m.py",
        "src/outputs/keep.py",
    ]


def test_links_to_files_are_sent_and_links_that_cannot_be_followed_reported(
    tmp_path: Path,
) -> None:
    outside = write(tmp_path / "outside", {"data.csv": "1,2\n", "dir/x.txt": "x"})
    root = write(tmp_path / "p", {"real.py": "r", "sub/a.py": "a"})
    (root / "link.py").symlink_to(root / "real.py")
    (root / "sublink").symlink_to(root / "sub")
    (root / "loop").symlink_to(root)
    (root / "sub" / "up").symlink_to(root / "sub")
    (root / "data.csv").symlink_to(outside / "data.csv")
    (root / "outdir").symlink_to(outside / "dir")
    (root / "dangling").symlink_to(root / "nothing")
    (root / "ping").symlink_to(root / "pong")
    (root / "pong").symlink_to(root / "ping")
    manifest = build_manifest(root)
    by_path = {f.path: f for f in manifest.files}
    assert sorted(by_path) == ["data.csv", "link.py", "real.py", "sub/a.py", "sublink/a.py"]
    assert by_path["link.py"].digest == by_path["real.py"].digest
    assert by_path["data.csv"].digest == hashlib.sha256(b"1,2\n").hexdigest()
    left_out = {i.path: i.why for i in manifest.left_out}
    assert left_out == {
        "dangling": f"a dangling link to {root / 'nothing'}",
        "loop/": "a link in a loop, to a folder that holds it",
        "outdir/": f"a link to the folder {outside / 'dir'} outside the project",
        "ping": f"a link in a loop to {root / 'pong'}",
        "pong": f"a link in a loop to {root / 'ping'}",
        "sub/up/": "a link in a loop, to a folder that holds it",
        "sublink/up/": "a link in a loop, to a folder that holds it",
    }
    report = manifest.left_out_report()
    assert report.startswith("flowyard: the snapshot also leaves out dangling (a dangling link")
    assert report.endswith("; and 4 more.") and len(report.splitlines()) == 1


def test_what_ignore_rules_leave_out_is_reported_with_the_rule(tmp_path: Path) -> None:
    root = write(
        tmp_path / "p",
        {
            "train.py": "open('data.csv')",
            ".gitignore": "# data\n\n*.csv\ncache/\n",
            "data.csv": "a,b\n" * 100,
            "raw/more.csv": "a,b\n" * 50,
            "cache/1.bin": b"1" * 10,
            "cache/deep/2.bin": b"2" * 10,
            ".git/HEAD": "ref",
            "src/__pycache__/m.cpython-311.pyc": "x",
        },
    )
    manifest = build_manifest(root)
    assert [f.path for f in manifest.files] == [".gitignore", "train.py"]
    left_out = {(i.path, i.why, i.files, i.size, i.ignore_file) for i in manifest.left_out}
    assert left_out == {
        ("cache/", ".gitignore line 4: cache/", 2, 20, ".gitignore"),
        ("data.csv", ".gitignore line 3: *.csv", 1, 400, ".gitignore"),
        ("raw/more.csv", ".gitignore line 3: *.csv", 1, 200, ".gitignore"),
    }
    assert manifest.left_out_report().splitlines() == [
        f"flowyard: ignore rules leave 4 files, 620 bytes out of the snapshot of {root}:",
        "  data.csv, raw/more.csv (2 files, 600 bytes): .gitignore line 3: *.csv",
        "  cache/ (2 files, 20 bytes): .gitignore line 4: cache/",
        "  To send them, add lines such as `!data.csv` to a .flowyardignore beside that "
        ".gitignore (the first of .flowyardignore, .amlignore, .gitignore found in a folder is "
        "the only one read there, so copy the .gitignore rules you keep).",
    ]

    (root / ".flowyardignore").write_text("*.csv\ncache/\n!data.csv\n")
    manifest = build_manifest(root)
    assert [f.path for f in manifest.files] == [
        ".flowyardignore",
        ".gitignore",
        "data.csv",
        "train.py",
    ]
    assert {i.path for i in manifest.left_out} == {"cache/", "raw/more.csv"}
    assert "after that rule in .flowyardignore." in manifest.left_out_report()


def test_a_big_left_out_folder_is_counted_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flowyard.snapshot.walk._MEASURE_BUDGET", 5)
    root = write(tmp_path / "p", {".gitignore": "env/\n", **{f"env/{i}": "x" for i in range(9)}})
    [env] = build_manifest(root).left_out
    assert (env.files, env.size, env.counted) == (5, 5, False)
    assert "env/ (5+ files, 5 bytes+)" in build_manifest(root).left_out_report()


def test_submitting_says_what_the_snapshot_left_out(
    sqlite_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Azure user's gap: `*.csv` in .gitignore, data the code reads, and a linked file."""
    outside = write(tmp_path / "outside", {"labels.txt": "cat dog\n"})
    project = make_mlproject(
        tmp_path / "p",
        "print(open('labels.txt').read())\nprint(open('data.csv').read())\n",
        parameters="{}",
        command="python main.py",
        files={".gitignore": "*.csv\n", "data.csv": "a,b\n"},
    )
    (project / "labels.txt").symlink_to(outside / "labels.txt")
    mlflow.set_tracking_uri(Workspace.get(sqlite_server.url).get_mlflow_tracking_uri())
    try:
        mlflow.set_experiment(f"snapshot-{tmp_path.name}")
        with pytest.raises(ExecutionException):
            mlflow.projects.run(
                str(project), backend="flowyard", backend_config={"USE_CONDA": False}
            )
        run = mlflow.search_runs(output_format="list")[0]
        log = Path(MlflowClient().download_artifacts(run.info.run_id, "logs/std_log.txt"))
    finally:
        mlflow.set_tracking_uri(None)
    printed = capsys.readouterr().err
    assert "ignore rules leave 1 file, 4 bytes out of the snapshot" in printed
    assert "data.csv (1 file, 4 bytes): .gitignore line 1: *.csv" in printed
    assert "`!data.csv` to a .flowyardignore" in printed
    assert "cat dog" in log.read_text()  # the linked file's content went with the snapshot


def test_limits_name_the_biggest_parts_and_the_ignore_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "model.pt": b"m" * 40_000,
            **{f"data/raw/{i}.csv": b"d" * 10_000 for i in range(12)},
            "train.py": "print()",
        },
    )
    with pytest.raises(SnapshotTooLargeError) as size_error:
        build_manifest(tmp_path, max_mb=0.1)
    message = size_error.value.message
    assert "is 160.0 KB (the limit is 0.1 MB)" in message
    assert message.index("data/raw/ (120.0 KB in 12 files)") < message.index("model.pt (40.0 KB)")
    assert str(tmp_path / ".flowyardignore") in message
    assert message.count(";") == 2 and message.endswith("backend_config.")

    with pytest.raises(SnapshotTooLargeError) as count_error:
        build_manifest(tmp_path, max_files=5)
    assert "14 files (the limit is 5)" in count_error.value.message
    assert "data/raw/ (120.0 KB in 12 files)" in count_error.value.message


def test_hash_cache_skips_unchanged_files(tmp_path: Path, cache: Path) -> None:
    root = write(tmp_path / "p", {"a.py": "a", "b.py": "b"})
    # Files this fresh could change again unseen within the mtime resolution, so they are
    # never cached; age them.
    old = time.time_ns() - 60_000_000_000
    for name in ("a.py", "b.py"):
        os.utime(root / name, ns=(old, old))
    build_manifest(root)
    cache_files = list((cache / "hashes").glob("*.json"))
    assert len(cache_files) == 1
    hashes = json.loads(cache_files[0].read_text())
    assert hashes["files"]["a.py"][2] == hashlib.sha256(b"a").hexdigest()

    # Poison a cached digest: if the unchanged file were hashed again, the poison would not show.
    hashes["files"]["a.py"][2] = "0" * 64
    cache_files[0].write_text(json.dumps(hashes))
    assert {f.path: f.digest for f in build_manifest(root).files}["a.py"] == "0" * 64

    os.utime(root / "a.py", ns=(old, old + 1))
    digests = {f.path: f.digest for f in build_manifest(root).files}
    assert digests["a.py"] == hashlib.sha256(b"a").hexdigest()


def test_snapshot_id_ignores_order() -> None:
    a = {"path": "a", "digest": "1" * 64, "size": 1, "executable": False}
    b = {"path": "b", "digest": "2" * 64, "size": 2, "executable": True}
    assert snapshot_id([a, b]) == snapshot_id([b, a]) != snapshot_id([a])


def test_git_info(tmp_path: Path) -> None:
    assert git_info(tmp_path) == {}
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
    }
    env["GIT_COMMITTER_EMAIL"] = "t@x"

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    git("init", "-b", "main")
    write(tmp_path, {"a.py": "a"})
    git("add", "a.py")
    git("commit", "-m", "first")
    git("remote", "add", "origin", "https://user:token@example.com/team/repo.git")
    tags = git_info(tmp_path)
    assert len(tags["mlflow.source.git.commit"]) == 40
    assert tags["mlflow.source.git.branch"] == "main"
    assert tags["mlflow.source.git.repoURL"] == "https://example.com/team/repo.git"
    assert tags["mlflow.gitRepoURL"] == tags["mlflow.source.git.repoURL"]
    assert tags["flowyard.git.dirty"] == "false"
    write(tmp_path, {"a.py": "changed"})
    assert git_info(tmp_path)["flowyard.git.dirty"] == "true"


def test_upload_is_incremental(server: Server, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    with Client(server.url) as client:
        first = upload(client, root)
        assert (first.file_count, first.uploaded_blobs) == (6, 6)
        assert first.uploaded_bytes == first.total_bytes

        again = upload(client, build_manifest(root))
        assert (again.id, again.uploaded_blobs, again.uploaded_bytes) == (first.id, 0, 0)

        (root / "train.py").write_text("print('changed')\n")
        changed = upload(client, root)
        assert changed.id != first.id
        assert (changed.uploaded_blobs, changed.uploaded_bytes) == (1, len("print('changed')\n"))

        detail = client.request("GET", f"/snapshots/{changed.id}")
        assert detail["files"] == build_manifest(root).to_json()
        assert (
            client.http.get(f"/snapshots/{changed.id}/files/src/lib/util.py").content
            == (root / "src/lib/util.py").read_bytes()
        )


def test_materialize_round_trip_reuses_the_cache(client: Client, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    result = upload(client, root)
    first = materialize(client, result.id, tmp_path / "job1")
    assert (first.downloaded_blobs, first.downloaded_bytes) == (6, result.total_bytes)
    for f in build_manifest(root).files:
        copy = tmp_path / "job1" / f.path
        assert copy.read_bytes() == (root / f.path).read_bytes()
        assert os.access(copy, os.X_OK) == f.executable
    second = materialize(client, result.id, tmp_path / "job2")
    assert second.downloaded_blobs == 0
    # Copies (or copy-on-write clones), never links: each job's file is its own.
    copy = tmp_path / "job2" / "train.py"
    assert copy.stat().st_ino != (tmp_path / "job1" / "train.py").stat().st_ino
    assert copy.stat().st_nlink == 1


def test_many_small_files_and_a_big_one_round_trip(client: Client, tmp_path: Path) -> None:
    """Small files go in batches (several, by count), the big one alone and streamed; what
    materialize writes is what was uploaded."""
    small_count = defaults.SNAPSHOT_BATCH_FILES * 2 + 10
    files: dict[str, str | bytes] = {
        f"pkg/m{i // 100}/f{i:04d}.py": os.urandom(1 + i % 700) for i in range(small_count)
    }
    files["data/big.bin"] = os.urandom(defaults.SNAPSHOT_BATCH_FILE_BYTES * 2 + 1)
    files["MLproject"] = f"name: big-{uuid.uuid4().hex}\n"
    root = write(tmp_path / "p", files)
    manifest = build_manifest(root, max_files=len(files))
    result = upload(client, manifest)
    distinct = {f.digest: f.size for f in manifest.files}
    assert (result.file_count, result.uploaded_blobs) == (len(files), len(distinct))
    assert result.uploaded_bytes == sum(distinct.values())
    assert client.missing_blobs(sorted(distinct)) == []
    again = upload(client, build_manifest(root, max_files=len(files)))
    assert (again.id, again.uploaded_blobs, again.uploaded_bytes) == (result.id, 0, 0)
    out = materialize(client, result.id, tmp_path / "job", cache_dir=tmp_path / "blobs")
    assert out.downloaded_blobs == len(distinct)
    for name, content in files.items():
        expected = content.encode() if isinstance(content, str) else content
        assert (tmp_path / "job" / name).read_bytes() == expected, name


def test_a_file_changed_after_its_hash_is_not_uploaded(client: Client, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    manifest = build_manifest(root)
    (root / "train.py").write_text("print('changed after the manifest')\n")
    with pytest.raises(InvalidRequestError, match=r"train\.py changed while it was uploaded"):
        upload(client, manifest)
    changed = next(f for f in manifest.files if f.path == "train.py")
    assert client.missing_blobs([changed.digest]) == [changed.digest]


def test_a_job_rewriting_its_file_in_place_changes_neither_the_cache_nor_another_job(
    client: Client, tmp_path: Path
) -> None:
    root = make_project(tmp_path / "p")
    original = (root / "train.py").read_bytes()
    result = upload(client, root)
    cache = tmp_path / "blobs"
    materialize(client, result.id, tmp_path / "job1", cache_dir=cache)
    materialize(client, result.id, tmp_path / "job2", cache_dir=cache)
    with (tmp_path / "job1" / "train.py").open("r+b") as f:  # the same inode, written over
        f.write(b"user code wrote here")
    assert (tmp_path / "job2" / "train.py").read_bytes() == original
    again = materialize(client, result.id, tmp_path / "job3", cache_dir=cache)
    assert again.downloaded_blobs == 0  # the cache is intact
    assert (tmp_path / "job3" / "train.py").read_bytes() == original


def test_a_cache_blob_changed_by_hand_is_fetched_again(client: Client, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    result = upload(client, root)
    cache = tmp_path / "blobs"
    materialize(client, result.id, tmp_path / "job1", cache_dir=cache)
    digest = next(f.digest for f in build_manifest(root).files if f.path == "train.py")
    (cache / digest).write_text("damaged")
    again = materialize(client, result.id, tmp_path / "job2", cache_dir=cache)
    assert again.downloaded_blobs == 1
    assert (tmp_path / "job2" / "train.py").read_bytes() == (root / "train.py").read_bytes()


def test_hash_lie_and_bad_digests_are_rejected(client: Client) -> None:
    claimed = hashlib.sha256(b"what I claim").hexdigest()
    response = client.http.put(f"/blobs/{claimed}", content=b"what I send")
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_REQUEST"
    assert "is stored only under the sha256 of its content" in response.json()["message"]
    assert client.request("POST", "/blobs/missing", json={"digests": [claimed]}) == {
        "missing": [claimed]
    }
    with pytest.raises(InvalidRequestError, match="is not a blob digest"):
        client.request("PUT", "/blobs/" + "A" * 64, content=b"x")
    with pytest.raises(NotFoundError):
        client.request("GET", f"/snapshots/{claimed}")
    assert client.http.get(f"/blobs/{claimed}").status_code == 404


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("../evil.py", "has a '.' or '..' part"),
        ("a/../../evil.py", "has a '.' or '..' part"),
        ("/etc/passwd", "is absolute"),
        ("a\\..\\evil", "contains a backslash"),
        ("a.py", "lists a.py twice"),
        ("a.py/b.py", "as a file and as the folder of a.py/b.py"),
    ],
)
def test_unsafe_manifests_are_rejected(client: Client, path: str, expected: str) -> None:
    content = uuid.uuid4().bytes
    digest = hashlib.sha256(content).hexdigest()
    client.request("PUT", f"/blobs/{digest}", content=content)
    entry = {"digest": digest, "size": len(content), "executable": False}
    files = [{"path": "a.py", **entry}, {"path": path, **entry}]
    with pytest.raises(InvalidRequestError, match=expected.replace(".", r"\.")):
        client.request("POST", "/snapshots", json={"files": files})


def test_a_snapshot_needs_its_blobs(client: Client) -> None:
    digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    files = [{"path": "a.py", "digest": digest, "size": 16, "executable": False}]
    with pytest.raises(InvalidRequestError, match=r"blobs of 1 files are not stored \(a\.py\)"):
        client.request("POST", "/snapshots", json={"files": files})


def test_a_runner_fetches_its_snapshot_without_pydantic(client: Client, tmp_path: Path) -> None:
    """The runner does without the API's models on every job's path (flowyard.runner.api says
    why), fetching the job's snapshot included."""
    result = upload(client, make_project(tmp_path / "p"))
    script = (
        "import sys\n"
        "from flowyard.client import Client\n"
        "from flowyard.runner import runner\n"
        "from flowyard.snapshot import materialize\n"
        "materialize(Client(sys.argv[1]), sys.argv[2], sys.argv[3])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, client.url, result.id, str(tmp_path / "job")],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert (tmp_path / "job" / "train.py").exists()


def test_cli_download_and_show(sqlite_server: Server, client: Client, tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    result = upload(client, root)
    env = {"FLOWYARD_WORKSPACE_URL": sqlite_server.url, "XDG_CACHE_HOME": str(tmp_path / "c2")}
    done = run_cli("snapshot", "download", result.id, str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stderr
    assert "Wrote 6 files" in done.stdout
    assert (tmp_path / "out" / "src/lib/util.py").read_bytes() == (
        root / "src/lib/util.py"
    ).read_bytes()
    assert os.access(tmp_path / "out" / "run.sh", os.X_OK)
    assert (tmp_path / "out" / "train.py").stat().st_nlink == 1
    shown = run_cli("snapshot", "show", result.id, env={**env, "COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    assert "src/lib/util.py" in shown.stdout and "6 files" in shown.stdout
    missing = run_cli("snapshot", "show", "0" * 64, env=env)
    assert missing.returncode != 0 and "No snapshot" in missing.stderr


def test_cache_home_honours_xdg(cache: Path) -> None:
    assert cache_home() == cache
