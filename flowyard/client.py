"""HTTP client for Flowyard's own API (MLflow's API is reached through MLflow's client)."""

from __future__ import annotations

from typing import Any

import httpx

from flowyard import defaults
from flowyard.errors import (
    FlowyardError,
    NotAWorkspaceError,
    WorkspaceUnreachableError,
    error_from_payload,
)


class Client:
    """A connection to one workspace server.

    Args:
        url: The workspace's base URL, e.g. ``http://127.0.0.1:5000``.
    """

    def __init__(self, url: str, *, timeout: float = defaults.REQUEST_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url + defaults.API_PREFIX,
            timeout=httpx.Timeout(timeout, connect=defaults.CONNECT_TIMEOUT_S),
        )

    @property
    def http(self) -> httpx.Client:
        """The underlying HTTP client, based at the API prefix, for calls that move raw bytes."""
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        """The workspace's name, version and capabilities; raises if the URL is not a workspace."""
        body = self.request("GET", "/info")
        if not isinstance(body, dict) or body.get("service") != "flowyard":
            raise NotAWorkspaceError(self._not_a_workspace())
        return body

    def health(self) -> dict[str, Any]:
        body = self.request("GET", "/health")
        assert isinstance(body, dict)
        return body

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise WorkspaceUnreachableError(
                f"The workspace at {self.url} does not answer; start it with `flowyard server` "
                "in your project folder, or fix the URL in .flowyard/config.json."
            ) from e
        except httpx.HTTPError as e:
            raise WorkspaceUnreachableError(
                f"The request to the workspace at {self.url} failed ({e}); check that the server "
                "is running and reachable."
            ) from e
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        if isinstance(body, dict) and "error_code" in body and "message" in body:
            raise error_from_payload(body)
        if response.status_code in (404, 405) or body is None:
            raise NotAWorkspaceError(self._not_a_workspace())
        raise FlowyardError(
            f"The workspace at {self.url} answered {response.status_code} to {method} {path}."
        )

    def _not_a_workspace(self) -> str:
        return (
            f"{self.url} answers but is not a Flowyard workspace; point the URL at a server "
            "started with `flowyard server`."
        )
