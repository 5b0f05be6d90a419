"""An ``mlflow.request_header_provider`` plugin: plain MLflow calls carry the workspace token.

User code stays as in the Azure samples (``mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())``
then ``mlflow.log_metric(...)``): MLflow asks every installed provider for headers, and this one
adds ``X-Flowyard-Token`` with the token :func:`flowyard.credentials.find_token` finds for the
current tracking URI. ``MLFLOW_TRACKING_TOKEN``, when the user sets it, is MLflow's own and wins.

The token found is also put in this process's ``MLFLOW_TRACKING_TOKEN``: processes it starts
inherit it, and MLflow's own local backend runs entry points in environments (``env_manager="uv"``,
``"virtualenv"``, ``"conda"``) where this plugin is not installed, so they need it there, as a user
would otherwise export it by hand. MLflow reads that variable before it asks this plugin, so after
the tracking URI moves to another workspace its first call carries the previous workspace's token
as ``Authorization``; the workspace takes ``X-Flowyard-Token`` first, which is why the plugin
sends its own header rather than ``Authorization``.
"""

from __future__ import annotations

import os
import threading

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

from flowyard.credentials import ENV_MLFLOW_TOKEN, find_token, is_exported, mark_exported

TOKEN_HEADER = "X-Flowyard-Token"
_lock = threading.Lock()


def _token_for(uri: str) -> str | None:
    """The token for ``uri``; exported for child processes. None when the user's own
    MLFLOW_TRACKING_TOKEN is set (MLflow sends that itself) or no token is configured."""
    with _lock:
        current = os.environ.get(ENV_MLFLOW_TOKEN)
        if current and not is_exported(current):
            return None  # the user's own: MLflow sends it
        if current:
            del os.environ[ENV_MLFLOW_TOKEN]  # ours, perhaps for another workspace: look again
        token = find_token(uri) if uri.startswith(("http://", "https://")) else None
        if token:
            os.environ[ENV_MLFLOW_TOKEN] = token
            mark_exported(token)
        return token


class FlowyardTokenHeaderProvider(RequestHeaderProvider):  # type: ignore[misc]
    def in_context(self) -> bool:
        # MLflow asks this, then for the headers, on every request: the token is looked up once,
        # in request_headers, which adds nothing where there is none.
        return True

    def request_headers(self) -> dict[str, str]:
        import mlflow

        token = _token_for(mlflow.get_tracking_uri())
        return {TOKEN_HEADER: token} if token else {}
