"""The git facts MLflow tags a run with, read from a project folder."""

from __future__ import annotations

import os
import subprocess
from urllib.parse import urlsplit, urlunsplit


def git_info(project_dir: str | os.PathLike[str]) -> dict[str, str]:
    """MLflow's git tags for the project, plus ``flowyard.git.dirty``; empty outside git.

    Never raises: a missing git or a broken repository only means no tags.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", os.fspath(project_dir), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                env=env,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    tags = {"mlflow.source.git.commit": commit}
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":  # "HEAD" means detached
        tags["mlflow.source.git.branch"] = branch
    url = git("config", "--get", "remote.origin.url")
    if url:
        tags["mlflow.source.git.repoURL"] = tags["mlflow.gitRepoURL"] = _without_credentials(url)
    status = git("status", "--porcelain")
    if status is not None:
        tags["flowyard.git.dirty"] = "true" if status else "false"
    return tags


def _without_credentials(url: str) -> str:
    # Tags are visible to everyone in the workspace; a token in an https remote must not be.
    parts = urlsplit(url)
    if "://" not in url or not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
