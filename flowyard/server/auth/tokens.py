"""Token formats, roles and the workspace's secret key.

- A user's API token is ``fy_<id>_<secret>``: ``id`` finds the row, and only ``sha256(secret)``
  is stored. The secret is 256 random bits, so a plain hash is enough (no slow KDF needed).
- A job's token is ``fyj_<job id>_<attempt>_<mac>``: an HMAC under the workspace key, so nothing
  is stored; it is valid while that attempt of that job has not ended.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from pathlib import Path

from cryptography.fernet import Fernet

from flowyard.schemas import RoleName

USER_PREFIX = "fy_"
JOB_PREFIX = "fyj_"
_USER_RE = re.compile(r"fy_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_JOB_RE = re.compile(r"fyj_([0-9a-f]{32})_([0-9]{1,6})_([0-9a-f]{64})")
ENV_SECRET_KEY = "FLOWYARD_SECRET_KEY"


class Role(IntEnum):
    """Each role may do everything the ones below it may; :attr:`label` is its name on the wire
    and in the database."""

    READER = 1  # see everything
    CONTRIBUTOR = 2  # track, submit, cancel
    OWNER = 3  # computes, users, tokens, deletion

    @property
    def label(self) -> RoleName:
        return RoleName(self.name.lower())

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"unknown role {value!r}; use one of {names}") from None


@dataclass(frozen=True)
class UserToken:
    id: str
    secret: str

    def __str__(self) -> str:
        return f"{USER_PREFIX}{self.id}_{self.secret}"

    @property
    def sha256(self) -> str:
        return hash_secret(self.secret)

    @classmethod
    def new(cls) -> UserToken:
        return cls(secrets.token_hex(8), secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, raw: str) -> UserToken | None:
        match = _USER_RE.fullmatch(raw.strip())
        return cls(match[1], match[2]) if match else None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys:
    """Purpose-bound keys derived from the workspace's one secret key."""

    def __init__(self, master: bytes) -> None:
        self._master = master

    def derive(self, purpose: str) -> bytes:
        return hmac.new(self._master, f"flowyard:{purpose}".encode(), hashlib.sha256).digest()

    def encrypt(self, value: str) -> str:
        """A secret value sealed for storage (Fernet: AES-128-CBC with HMAC-SHA256)."""
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()

    @cached_property
    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self.derive("secrets")))

    @cached_property
    def _jobs_key(self) -> bytes:
        return self.derive("jobs")

    def job_token(self, job_id: str, attempt: int) -> str:
        return f"{JOB_PREFIX}{job_id}_{attempt}_{self._job_mac(job_id, attempt)}"

    def parse_job_token(self, raw: str) -> tuple[str, int] | None:
        """``(job id, attempt)`` of a job token this workspace signed, else None."""
        match = _JOB_RE.fullmatch(raw.strip())
        if not match:
            return None
        job_id, attempt = match[1], int(match[2])
        if not hmac.compare_digest(match[3], self._job_mac(job_id, attempt)):
            return None
        return job_id, attempt

    def run_mark(self, experiment_id: str, start_ms: int) -> str:
        """The mark a run made by a submission carries (its `flowyard.submitted` tag): bound to
        the run's experiment and start time, so it cannot be forged, nor copied onto another
        run, by anyone who may write tags."""
        key = self.derive("submitted-runs")
        return hmac.new(key, f"{experiment_id}:{start_ms}".encode(), "sha256").hexdigest()

    def _job_mac(self, job_id: str, attempt: int) -> str:
        return hmac.new(self._jobs_key, f"{job_id}:{attempt}".encode(), "sha256").hexdigest()


def load_key_file(path: Path) -> bytes:
    """The key in ``path``, created (32 random bytes, mode 0600) by the first process to ask.

    Several server processes may start together: the key is written to a private temporary file
    and linked into place, so each reads the same whole key.
    """
    env = os.environ.get(ENV_SECRET_KEY)
    if env:
        return hashlib.sha256(env.encode()).digest()
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())
