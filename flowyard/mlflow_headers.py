"""An ``mlflow.request_header_provider`` plugin: plain MLflow calls carry the workspace token.

User code stays as in the Azure samples (``mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())``
then ``mlflow.log_metric(...)``): MLflow asks every installed provider for headers, and this one
adds ``Authorization: Bearer`` with the token :func:`flowyard.credentials.find_token` finds for the
current tracking URI. ``MLFLOW_TRACKING_TOKEN``, when set, is MLflow's own and wins.
"""

from __future__ import annotations

import os

from mlflow.tracking.request_header.abstract_request_header_provider import (
    RequestHeaderProvider,
)

from flowyard.credentials import ENV_MLFLOW_TOKEN, find_token


class FlowyardTokenHeaderProvider(RequestHeaderProvider):  # type: ignore[misc]
    def _token(self) -> str | None:
        if os.environ.get(ENV_MLFLOW_TOKEN):
            return None  # MLflow sends it itself
        import mlflow

        uri = mlflow.get_tracking_uri()
        if not uri.startswith(("http://", "https://")):
            return None
        return find_token(uri)

    def in_context(self) -> bool:
        # MLflow asks this, then for the headers, on every request: the token is looked up once,
        # in request_headers, which adds nothing where there is none.
        return True

    def request_headers(self) -> dict[str, str]:
        token = self._token()
        return {"Authorization": f"Bearer {token}"} if token else {}
