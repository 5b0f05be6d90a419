"""Where a client finds its workspace token, kept outside every project folder (never snapshot).

Order: ``$FLOWYARD_TOKEN``, else the credentials file's entry for the workspace URL
(``$XDG_CONFIG_HOME/flowyard/credentials.json``, default ``~/.config/flowyard/``, mode 0600),
else ``$MLFLOW_TRACKING_TOKEN`` (what MLflow's own client sends as ``Authorization: Bearer``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from flowyard.errors import ConfigError
from flowyard.paths import config_dir

ENV_TOKEN = "FLOWYARD_TOKEN"
ENV_MLFLOW_TOKEN = "MLFLOW_TRACKING_TOKEN"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def _key(url: str) -> str:
    return url.strip().rstrip("/")


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"The credentials file {path} cannot be read ({e}); fix or delete it and save the "
            "token again with `flowyard login`."
        ) from e
    tokens = data.get("tokens") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in tokens.items()} if isinstance(tokens, dict) else {}


# The MLFLOW_TRACKING_TOKEN values Flowyard's MLflow plugin exported for child processes (see
# flowyard.mlflow_headers): each belongs to one workspace, so none is an answer for another URL,
# and none is mistaken for the user's own when something puts an older one back. Child processes
# inherit the export but not this set: ENV_EXPORTED carries a fingerprint of it to them.
exported: set[str] = set()
ENV_EXPORTED = "FLOWYARD_EXPORTED_TOKEN"


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def is_exported(token: str) -> bool:
    """Whether ``token`` is one Flowyard exported, in this process or a parent."""
    return token in exported or fingerprint(token) in os.environ.get(ENV_EXPORTED, "").split(",")


def mark_exported(token: str) -> None:
    """Remember ``token`` as exported, here and (by fingerprint) for child processes."""
    exported.add(token)
    marks = [m for m in os.environ.get(ENV_EXPORTED, "").split(",") if m]
    if fingerprint(token) not in marks:
        os.environ[ENV_EXPORTED] = ",".join([*marks, fingerprint(token)][-16:])


def find_token(url: str | None) -> str | None:
    """The token to send to the workspace at ``url``, or None when none is configured."""
    token = os.environ.get(ENV_TOKEN)
    if token:
        return token.strip()
    if url:
        saved = _load(credentials_path()).get(_key(url))
        if saved:
            return saved
    env = os.environ.get(ENV_MLFLOW_TOKEN)
    return env if env and not is_exported(env) else None


def save_token(url: str, token: str) -> Path:
    """Store ``token`` for ``url`` in the credentials file (created with mode 0600)."""
    tokens = _load(credentials_path())
    tokens[_key(url)] = token
    return _write(tokens)


def forget_token(url: str) -> bool:
    """Remove the saved token for ``url``; False when there was none."""
    tokens = _load(credentials_path())
    if tokens.pop(_key(url), None) is None:
        return False
    _write(tokens)
    return True


def _write(tokens: dict[str, str]) -> Path:
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written whole to a private temporary file (mkstemp makes it 0600), then renamed: never
    # readable by others, never half-written.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"tokens": tokens}, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
