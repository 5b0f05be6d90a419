"""Hostile input against a real server: paths that try to leave the workspace's storage, bodies
over the server's limits, and uploads that lie about their content. Each is refused with a clear
4xx, and nothing is written anywhere: not in the artifact store, not in the server's temp folder,
not outside the workspace."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from flowyard import defaults
from flowyard.client import Client
from flowyard.snapshot import batch, materialize, upload
from tests.factories import unstarted_job
from tests.servers import Server, auth_headers, free_port, init_workspace

MLFLOW_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
# Small limits, so each over-limit case costs little.
MAX_BODY_MB = 0.2
MAX_BLOB_MB = 1.0
MAX_LOG_APPEND_KIB = 256


@dataclass
class Hostile:
    """A server with small limits, and the folders a test watches."""

    server: Server
    root: Path  # everything the server's test made: its project, workspace and temp folder
    workspace: Path
    tmp: Path  # the server's TMPDIR

    @property
    def artifacts(self) -> Path:
        return self.workspace / defaults.ARTIFACTS_DIR

    def files(self) -> set[str]:
        """Every file under ``root`` (the server's own log and database aside), and under the
        machine's temp folder anything named like Flowyard's upload spools."""
        found = {
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if not p.is_dir() and not p.name.startswith(("server-", defaults.SQLITE_FILE))
        }
        system_tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        return found | {str(p) for p in system_tmp.glob("flowyard-blob-*")}

    @contextmanager
    def writes_nothing(self) -> Iterator[None]:
        """The block must leave no file behind and remove none, anywhere."""
        before = self.files()
        yield
        assert self.files() == before
        assert not any(self.tmp.iterdir()), "an upload left its spool in the server's TMPDIR"

    def raw(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, object]]:
        """A request whose path is sent exactly as given (httpx would resolve '..' first)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in {**auth_headers(self.server), **(headers or {})}.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            text = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(text)
        except ValueError:
            payload = {"text": text.decode(errors="replace")}
        return response.status, payload if isinstance(payload, dict) else {"json": payload}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    project, tmp = root / "project", root / "server-tmp"
    tmp.mkdir()
    port = free_port()
    workspace = init_workspace(project, port=port)
    server = Server(
        args=[
            "--max-body-mb",
            str(MAX_BODY_MB),
            "--max-blob-mb",
            str(MAX_BLOB_MB),
            "--max-log-append-kib",
            str(MAX_LOG_APPEND_KIB),
        ],
        cwd=project,
        port=port,
        env={"TMPDIR": str(tmp)},
    ).start()
    yield Hostile(server, root, workspace, tmp)
    server.stop()


@pytest.fixture
def api(hostile: Hostile) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=hostile.server.url + defaults.API_PREFIX,
        headers=auth_headers(hostile.server),
        timeout=60,
    ) as client:
        yield client


def _blob(api: httpx.Client, content: bytes | None = None) -> dict[str, object]:
    content = content if content is not None else uuid.uuid4().bytes
    digest = hashlib.sha256(content).hexdigest()
    assert api.put(f"/blobs/{digest}", content=content).status_code == 200
    return {"digest": digest, "size": len(content), "executable": False}


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code
    message: str = body["message"]
    # One sentence: the thing, then the fix after a semicolon.
    assert message.endswith(".") and ";" in message, message
    return message


# -- snapshot manifests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../evil.py", "has a '.' or '..' part"),
        ("a/../../evil.py", "has a '.' or '..' part"),
        ("./a.py", "has a '.' or '..' part"),
        ("/etc/passwd", "is absolute"),
        ("a\\..\\..\\evil.py", "contains a backslash"),
        # The API's input guard answers these two before the snapshot's own check.
        ("a\0.py", "The value at files[1].path contains a NUL character"),
        ("", "is empty"),
        ("a//b.py", "has an empty part"),
        ("dir/", "has an empty part"),
        ("x" * 256, "has a part of 256 bytes, over the limit of 255 bytes"),
        ("é" * 128, "has a part of 256 bytes"),
        ("/".join(["d" * 200] * 6), "is 1,205 bytes long, over the limit of 1,024 bytes"),
        ("\ud800.py", "The value at files[1].path contains an unpaired surrogate"),
    ],
)
def test_a_manifest_with_a_hostile_path_is_refused(
    api: httpx.Client, hostile: Hostile, path: str, reason: str
) -> None:
    entry = _blob(api)
    files = [{"path": "ok.py", **entry}, {"path": path, **entry}]
    # ASCII JSON, which can carry a lone surrogate (\ud800) as an escape.
    body = json.dumps({"files": files}).encode()
    with hostile.writes_nothing():
        response = api.post(
            "/snapshots", content=body, headers={"content-type": "application/json"}
        )
    message = _error(response, 400, "INVALID_REQUEST")
    assert reason in message
    if message.startswith("The snapshot path "):
        assert "a snapshot path is relative to the project folder" in message
    assert len(message) < 400  # a long path is cut short in the message


def test_a_manifest_naming_blobs_never_uploaded_is_refused(
    api: httpx.Client, hostile: Hostile
) -> None:
    stored = _blob(api)
    never = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    files = [
        {"path": "ok.py", **stored},
        {"path": "ghost.py", "digest": never, "size": 16, "executable": False},
    ]
    with hostile.writes_nothing():
        response = api.post("/snapshots", json={"files": files})
    message = _error(response, 400, "BLOBS_MISSING")
    assert "The blobs of 1 files are not stored (ghost.py)" in message
    assert "upload them before creating the snapshot" in message


def test_a_manifest_lying_about_a_size_is_refused(api: httpx.Client, hostile: Hostile) -> None:
    entry = {**_blob(api, b"twelve bytes"), "size": 13}
    with hostile.writes_nothing():
        response = api.post("/snapshots", json={"files": [{"path": "a.py", **entry}]})
    message = _error(response, 400, "INVALID_REQUEST")
    assert "gives a.py 13 bytes but its blob" in message


def test_a_manifest_with_a_negative_size_or_bad_digest_is_refused(api: httpx.Client) -> None:
    entry = _blob(api)
    negative = {"path": "a.py", **entry, "size": -1}
    assert "negative size" in _error(
        api.post("/snapshots", json={"files": [negative]}), 400, "INVALID_REQUEST"
    )
    bad = {"path": "a.py", **entry, "digest": "../../" + "0" * 58}
    assert "is not a blob digest" in _error(
        api.post("/snapshots", json={"files": [bad]}), 400, "INVALID_REQUEST"
    )


# -- blobs ---------------------------------------------------------------------------------


def test_a_blob_whose_content_lies_about_its_hash_is_not_stored(
    api: httpx.Client, hostile: Hostile
) -> None:
    claimed = hashlib.sha256(b"what I claim").hexdigest()
    with hostile.writes_nothing():
        response = api.put(f"/blobs/{claimed}", content=b"what I send")
    message = _error(response, 400, "INVALID_REQUEST")
    assert f"The content sent for blob {claimed} has sha256 " in message
    assert api.get(f"/blobs/{claimed}").status_code == 404
    assert api.post("/blobs/missing", json={"digests": [claimed]}).json() == {"missing": [claimed]}
    assert not list(hostile.artifacts.rglob(claimed))


@pytest.mark.parametrize(
    "digest", ["..%2F..%2F" + "0" * 58, "%2e%2e", "A" * 64, "0" * 63, "0" * 65, "0" * 63 + "g"]
)
def test_a_blob_digest_that_is_not_a_digest_is_refused(hostile: Hostile, digest: str) -> None:
    with hostile.writes_nothing():
        status, body = hostile.raw("PUT", f"{defaults.API_PREFIX}/blobs/{digest}", b"x")
    assert status in (400, 404), body  # 404: the router found no such route at all
    if status == 400:
        assert "is not a blob digest" in str(body["message"])


def test_a_blob_announced_over_the_limit_is_refused_unread(
    api: httpx.Client, hostile: Hostile
) -> None:
    content = b"x" * (int(MAX_BLOB_MB * 1_000_000) + 1)
    digest = hashlib.sha256(content).hexdigest()
    with hostile.writes_nothing():
        response = api.put(f"/blobs/{digest}", content=content)
    message = _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "of 1.0 MB is over the workspace's limit of 1 MB for one snapshot file" in message
    assert ".flowyardignore" in message and "--max-blob-mb" in message
    assert api.post("/blobs/missing", json={"digests": [digest]}).json()["missing"] == [digest]


def test_a_streamed_blob_is_cut_off_at_the_limit_and_its_spool_removed(
    api: httpx.Client, hostile: Hostile
) -> None:
    piece = b"y" * 65536
    count = int(MAX_BLOB_MB * 1_000_000) // len(piece) + 4
    digest = hashlib.sha256(piece * count).hexdigest()

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(count):
            yield piece

    with hostile.writes_nothing():
        response = api.put(f"/blobs/{digest}", content=chunks())
    assert "for one snapshot file" in _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert api.post("/blobs/missing", json={"digests": [digest]}).json()["missing"] == [digest]


def test_a_blob_at_the_limit_is_stored(api: httpx.Client) -> None:
    content = os.urandom(int(MAX_BLOB_MB * 1_000_000))
    digest = hashlib.sha256(content).hexdigest()
    assert api.put(f"/blobs/{digest}", content=content).json() == {
        "digest": digest,
        "size": len(content),
    }


# -- blob batches ----------------------------------------------------------------------------


def _batch(*blobs: tuple[str, bytes]) -> bytes:
    return b"".join(batch.encode(blobs))


def _named(content: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(content).hexdigest(), content


def _missing(api: httpx.Client, *digests: str) -> list[str]:
    missing: list[str] = api.post("/blobs/missing", json={"digests": list(digests)}).json()[
        "missing"
    ]
    return missing


def test_a_batch_stores_its_blobs_in_one_request(api: httpx.Client, hostile: Hostile) -> None:
    a, b = _named(uuid.uuid4().bytes), _named(b"")
    response = api.post("/blobs/batch", content=_batch(a, b, a))
    assert response.json() == {"blobs": [{"digest": d, "size": len(c)} for d, c in (a, b, a)]}
    assert _missing(api, a[0], b[0]) == []
    assert api.get(f"/blobs/{a[0]}").content == a[1]
    assert api.get(f"/blobs/{b[0]}").content == b""
    stored = hostile.artifacts / "flowyard" / "blobs" / a[0][:2] / a[0]
    assert stored.read_bytes() == a[1]
    assert not list(hostile.artifacts.rglob("*.part")), "a temp file was left beside a blob"
    # Sent again (the digests already stored): the same answer, nothing changes.
    assert api.post("/blobs/batch", content=_batch(a)).json()["blobs"] == [
        {"digest": a[0], "size": len(a[1])}
    ]


def test_a_batch_with_one_lying_blob_stores_none_of_its_blobs(
    api: httpx.Client, hostile: Hostile
) -> None:
    good1, good2 = _named(uuid.uuid4().bytes), _named(uuid.uuid4().bytes)
    claimed = hashlib.sha256(b"what I claim").hexdigest()
    body = _batch(good1, (claimed, b"what I send"), good2)
    with hostile.writes_nothing():
        response = api.post("/blobs/batch", content=body)
    message = _error(response, 400, "INVALID_REQUEST")
    assert f"The content sent for blob {claimed} has sha256 " in message
    assert _missing(api, good1[0], claimed, good2[0]) == [good1[0], claimed, good2[0]]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not a header\n", "no valid blob header at byte 0"),
        (b"A" * 64 + b" 1\nx", "no valid blob header at byte 0"),
        (b"0" * 64 + b" 01\nx", "no valid blob header at byte 0"),
        (b"0" * 64 + b" -1\n", "no valid blob header at byte 0"),
        (b"0" * 64 + b" 10\nshort", "ends inside blob"),
        (_batch(_named(b"ok")) + b"trailing", "no valid blob header at byte 69"),
    ],
)
def test_a_malformed_batch_is_refused(
    api: httpx.Client, hostile: Hostile, body: bytes, expected: str
) -> None:
    with hostile.writes_nothing():
        response = api.post("/blobs/batch", content=body)
    assert expected in _error(response, 400, "INVALID_REQUEST")
    assert _missing(api, hashlib.sha256(b"ok").hexdigest()) != []


def test_a_batch_blob_over_the_blob_limit_is_refused(api: httpx.Client, hostile: Hostile) -> None:
    # The header alone announces it: the body stays under the request limit.
    size = int(MAX_BLOB_MB * 1_000_000) + 1
    body = _batch(_named(b"fine")) + f"{'0' * 64} {size}\n".encode() + b"x" * 1000
    with hostile.writes_nothing():
        response = api.post("/blobs/batch", content=body)
    message = _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert f"has {size:,} bytes, over the workspace's limit" in message
    assert "--max-blob-mb" in message
    assert _missing(api, hashlib.sha256(b"fine").hexdigest()) != []


def test_a_batch_over_the_body_limit_or_the_blob_count_is_refused(
    api: httpx.Client, hostile: Hostile
) -> None:
    big = [_named(os.urandom(50_000)) for _ in range(5)]
    with hostile.writes_nothing():
        response = api.post("/blobs/batch", content=_batch(*big))
    assert "--max-body-mb" in _error(response, 413, "PAYLOAD_TOO_LARGE")
    empties = _batch(*[_named(b"")] * (defaults.SNAPSHOT_BATCH_MAX_BLOBS + 1))
    assert len(empties) < MAX_BODY_MB * 1_000_000
    with hostile.writes_nothing():
        response = api.post("/blobs/batch", content=empties)
    message = _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert f"more than {defaults.SNAPSHOT_BATCH_MAX_BLOBS:,} blobs" in message


def test_upload_falls_back_to_one_blob_a_request_past_the_body_limit(
    hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's --max-body-mb is below a batch: the batch is refused and its files go one
    by one, and the snapshot comes back whole."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    project = tmp_path / "p"
    files = {f"f{i}.bin": os.urandom(30_000) for i in range(10)}
    for name, content in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_bytes(content)
    with Client(hostile.server.url) as client:
        result = upload(client, project)
        assert result.uploaded_blobs == len(files)
        out = materialize(client, result.id, tmp_path / "out", cache_dir=tmp_path / "cache")
    assert out.file_count == len(files)
    for name, content in files.items():
        assert (tmp_path / "out" / name).read_bytes() == content


# -- request bodies and log appends ----------------------------------------------------------


def test_a_json_body_over_the_limit_is_refused(api: httpx.Client, hostile: Hostile) -> None:
    entry = {"digest": "0" * 64, "size": 1, "executable": False}
    files = [{"path": f"f{i:06}.py", **entry} for i in range(5000)]
    body = json.dumps({"files": files}).encode()
    assert len(body) > MAX_BODY_MB * 1_000_000
    with hostile.writes_nothing():
        response = api.post(
            "/snapshots", content=body, headers={"content-type": "application/json"}
        )
    message = _error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "over the workspace's limit of 0.2 MB for a request" in message
    assert "--max-body-mb" in message
    # The same body sent in chunks, without a length.
    with hostile.writes_nothing():
        streamed = api.post(
            "/snapshots",
            content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
            headers={"content-type": "application/json"},
        )
    _error(streamed, 413, "PAYLOAD_TOO_LARGE")


def test_mlflow_api_bodies_are_bounded_too(hostile: Hostile) -> None:
    name = "x" * int(MAX_BODY_MB * 1_000_000 + 10)
    with httpx.Client(headers=auth_headers(hostile.server), timeout=60) as client:
        response = client.post(
            hostile.server.url + "/api/2.0/mlflow/experiments/create", json={"name": name}
        )
    assert response.status_code == 413
    # MLflow's client knows only MLflow's error codes.
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


@pytest.fixture(scope="module")
def job(hostile: Hostile) -> tuple[str, str]:
    """A local job whose runner never starts: its id and its job token."""
    return unstarted_job(hostile.server.url, auth_headers(hostile.server))


@pytest.fixture(scope="module")
def job_id(job: tuple[str, str]) -> str:
    return job[0]


@pytest.fixture
def runner(hostile: Hostile, job: tuple[str, str]) -> Iterator[httpx.Client]:
    """The job's runner: only its token may append to the job's log or report its status."""
    headers = {"Authorization": f"Bearer {job[1]}"}
    with httpx.Client(
        base_url=hostile.server.url + defaults.API_PREFIX, headers=headers, timeout=60
    ) as client:
        yield client


def test_a_log_append_over_the_limit_is_refused_and_not_stored(
    api: httpx.Client, runner: httpx.Client, job_id: str
) -> None:
    size = int(api.get(f"/jobs/{job_id}").json()["log_size"])
    too_big = b"z" * (MAX_LOG_APPEND_KIB * 1024 + 1)
    message = _error(
        runner.post(f"/jobs/{job_id}/logs", params={"offset": size}, content=too_big),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert "for one log append" in message and "smaller pieces" in message
    streamed = runner.post(
        f"/jobs/{job_id}/logs", params={"offset": size}, content=iter([too_big[:1000], too_big])
    )
    _error(streamed, 413, "PAYLOAD_TOO_LARGE")
    assert api.get(f"/jobs/{job_id}").json()["log_size"] == size
    at_limit = b"z" * (MAX_LOG_APPEND_KIB * 1024)
    appended = runner.post(f"/jobs/{job_id}/logs", params={"offset": size}, content=at_limit)
    assert appended.json() == {"size": size + len(at_limit)}


# -- MLflow's artifact proxy ---------------------------------------------------------------


def test_an_ordinary_artifact_upload_still_works(hostile: Hostile) -> None:
    name = f"ok-{uuid.uuid4().hex}/model.txt"
    assert hostile.raw("PUT", f"{MLFLOW_ARTIFACTS}/{name}", b"weights")[0] == 200
    assert (hostile.artifacts / name).read_bytes() == b"weights"
    assert hostile.raw("GET", f"{MLFLOW_ARTIFACTS}/{name}")[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "../../{token}.txt",
        "%2e%2e/%2e%2e/{token}.txt",
        "%2E%2E%2F%2E%2E%2F{token}.txt",
        "..%2f..%2f{token}.txt",
        "%252e%252e/%252e%252e/{token}.txt",
        "a/../../../{token}.txt",
        "/{tmp}/{token}.txt",
        "%2F{tmp}%2F{token}.txt",
        "file:%2F%2F%2F{tmp}%2F{token}.txt",
        "a/..%5c..%5c..%5c{token}.txt",
        "a%00/{token}.txt",
        "a%0a{token}.txt",
        "./{token}.txt",
        "a//{token}.txt",
        "{long}/{token}.txt",
        "flowyard/blobs/00/{token}.txt",
        "flowyard%2fblobs/{token}.txt",
    ],
)
@pytest.mark.parametrize("prefix", [MLFLOW_ARTIFACTS, "/ajax-api/2.0/mlflow-artifacts/artifacts"])
def test_a_hostile_artifact_path_writes_nothing(hostile: Hostile, prefix: str, path: str) -> None:
    token = f"escape-{uuid.uuid4().hex}"
    quoted_tmp = str(hostile.root).lstrip("/")
    path = path.format(token=token, tmp=quoted_tmp, long="n" * 300)
    with hostile.writes_nothing():
        status, body = hostile.raw("PUT", f"{prefix}/{path}", b"pwned")
    assert status in (400, 403), body
    assert "message" in body
    assert not list(Path(hostile.root).rglob(f"{token}*"))
    assert not list(Path("/tmp").glob(f"{token}*"))


def test_deleting_the_artifact_root_or_the_blob_store_is_refused(
    api: httpx.Client, hostile: Hostile
) -> None:
    kept = f"kept-{uuid.uuid4().hex}.txt"
    assert hostile.raw("PUT", f"{MLFLOW_ARTIFACTS}/{kept}", b"keep me")[0] == 200
    entry = _blob(api)
    blob_file = hostile.artifacts / "flowyard" / "blobs" / str(entry["digest"])[:2]
    before = hostile.files()
    # MLflow 3.17 alone empties the whole artifact store for the first two.
    for path in [".", "%2e", "a/..", "flowyard", "flowyard/blobs", f"{blob_file.name}/.."]:
        status, body = hostile.raw("DELETE", f"{MLFLOW_ARTIFACTS}/{path}")
        assert status in (400, 403), (path, body)
    assert hostile.files() == before
    assert (hostile.artifacts / kept).read_bytes() == b"keep me"
    assert api.get(f"/blobs/{entry['digest']}").status_code == 200


def test_overwriting_a_snapshot_blob_through_mlflow_is_refused(
    api: httpx.Client, hostile: Hostile
) -> None:
    content = uuid.uuid4().bytes
    digest = str(_blob(api, content)["digest"])
    key = f"flowyard/blobs/{digest[:2]}/{digest}"
    status, body = hostile.raw("PUT", f"{MLFLOW_ARTIFACTS}/{key}", b"malicious code")
    assert status == 403
    assert "where the workspace keeps its snapshot blobs" in str(body["message"])
    assert api.get(f"/blobs/{digest}").content == content
    # Reading through MLflow's proxy stays allowed.
    assert hostile.raw("GET", f"{MLFLOW_ARTIFACTS}/{key}")[0] == 200


def test_a_symlink_in_the_artifact_store_does_not_lead_uploads_outside(
    hostile: Hostile, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    link = hostile.artifacts / f"link-{uuid.uuid4().hex}"
    link.symlink_to(outside, target_is_directory=True)
    try:
        status, _ = hostile.raw("PUT", f"{MLFLOW_ARTIFACTS}/{link.name}/planted.txt", b"x")
        assert status == 400
        assert not any(outside.iterdir())
    finally:
        link.unlink()


# -- text and numbers the database cannot hold -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"name": "surrogate", "type": "process", "settings": {"x": "\\ud800"}}',
            "The value at settings.x contains an unpaired surrogate; send text as valid UTF-8.",
        ),
        (
            b'{"name": "nul", "type": "process", "address": "a\\u0000b"}',
            "The value at address contains a NUL character; remove it.",
        ),
        (
            b'{"name": "nan", "type": "process", "settings": {"n": [1, NaN]}}',
            "The value at settings.n[1] is NaN or Infinity, which JSON does not allow",
        ),
        (
            b'{"name": "inf", "type": "process", "max_concurrent_jobs": 1e400}',
            "The value at max_concurrent_jobs is NaN or Infinity",
        ),
        (
            b'{"name": "key", "type": "process", "settings": {"\\udc00": 1}}',
            "A key in settings contains an unpaired surrogate",
        ),
    ],
)
def test_text_and_numbers_a_database_cannot_hold_are_refused(
    api: httpx.Client, body: bytes, expected: str
) -> None:
    response = api.post("/computes", content=body, headers={"content-type": "application/json"})
    assert expected in _error(response, 400, "INVALID_REQUEST")
    # Such a compute, once stored, made every later listing fail.
    assert api.get("/computes").status_code == 200
    assert api.get(f"/computes/{json.loads(body)['name']}").status_code == 404


def test_a_nul_in_a_path_or_query_is_refused(api: httpx.Client) -> None:
    message = _error(api.post("/jobs/a%00b/cancel"), 400, "INVALID_REQUEST")
    assert message == "The request's path or query contains a NUL character; remove it."
    _error(api.get("/jobs", params={"compute": "a\0b"}), 400, "INVALID_REQUEST")


def test_numbers_past_the_database_columns_are_refused(
    api: httpx.Client, runner: httpx.Client, job_id: str
) -> None:
    for params in ({"offset": 2**63}, {"offset": 0, "limit": 2**64}):
        assert api.get(f"/jobs/{job_id}/logs", params=params).status_code == 422
    assert runner.post(f"/jobs/{job_id}/logs", params={"offset": 2**63}).status_code == 422
    submit = {
        "experiment_id": "0",
        "snapshot_id": "0" * 64,
        "project_uri": ".",
        "entry_point": "main",
        "user": "hostile",
        "priority": 2**31,
    }
    assert api.post("/jobs", json=submit).status_code == 422
    status = {"status": "failed", "exit_code": -(2**31) - 1}
    assert runner.post(f"/jobs/{job_id}/status", json=status).status_code == 422


def test_a_blob_sent_as_json_is_still_only_bytes(api: httpx.Client) -> None:
    content = b'{"x": "\\ud800", "n": NaN}'  # not looked into: a blob is any bytes
    digest = hashlib.sha256(content).hexdigest()
    response = api.put(
        f"/blobs/{digest}", content=content, headers={"content-type": "application/json"}
    )
    assert response.json() == {"digest": digest, "size": len(content)}
    assert api.get(f"/blobs/{digest}").content == content
