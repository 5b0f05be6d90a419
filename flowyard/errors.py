"""The one exception tree of Flowyard.

Every error a user can cause is a :class:`FlowyardError` whose message is one sentence naming the
thing and the fix. The server turns an error's ``code`` into an HTTP status and a JSON body; the
client raises the same class again from that body (see :func:`error_from_payload`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class FlowyardError(Exception):
    """Base of every error Flowyard raises on purpose."""

    code: ClassVar[str] = "FLOWYARD_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_payload(self) -> dict[str, Any]:
        return {"error_code": self.code, "message": self.message}


class ConfigError(FlowyardError):
    """A configuration file or setting is missing or malformed."""

    code = "CONFIG_ERROR"
    http_status = 400


class ConfigNotFoundError(ConfigError):
    code = "CONFIG_NOT_FOUND"


class WorkspaceError(FlowyardError):
    """The workspace cannot be reached or is not a workspace."""

    code = "WORKSPACE_ERROR"
    http_status = 502


class WorkspaceUnreachableError(WorkspaceError):
    code = "WORKSPACE_UNREACHABLE"


class WorkspaceUnavailableError(WorkspaceUnreachableError):
    """A proxy in front of the workspace answered 502/503/504: it is away for now."""

    code = "WORKSPACE_UNAVAILABLE"
    http_status = 503


class NotAWorkspaceError(WorkspaceError):
    code = "NOT_A_WORKSPACE"


class WorkspaceExistsError(ConfigError):
    code = "WORKSPACE_EXISTS"
    http_status = 409


class ServerStartError(FlowyardError):
    """The workspace server cannot start with the given options."""

    code = "SERVER_START_ERROR"


class DatabaseError(ServerStartError):
    code = "DATABASE_ERROR"


class DatabaseUnavailableError(FlowyardError):
    """The workspace's database did not answer a request: a passing outage, worth a retry."""

    code = "DATABASE_UNAVAILABLE"
    http_status = 503


class InvalidRequestError(FlowyardError):
    code = "INVALID_REQUEST"
    http_status = 400


class PayloadTooLargeError(InvalidRequestError):
    """A request body is over one of the server's size limits."""

    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class BlobsMissingError(InvalidRequestError):
    """A snapshot names blobs the workspace does not hold (never uploaded, or collected since
    the submission was told they were there): upload them, then create it again."""

    code = "BLOBS_MISSING"


class NotFoundError(FlowyardError):
    code = "NOT_FOUND"
    http_status = 404


class ConflictError(FlowyardError):
    """The request does not fit the current state of what it names."""

    code = "CONFLICT"
    http_status = 409


class UnauthenticatedError(FlowyardError):
    """No credential, or one the workspace does not know (unknown, expired or revoked)."""

    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDeniedError(FlowyardError):
    """The credential is known but its role or scope does not allow the request."""

    code = "PERMISSION_DENIED"
    http_status = 403


class StorageFullError(FlowyardError):
    """A file system the workspace or a runner writes to has no room for what was to be
    written; nothing half-written is left."""

    code = "STORAGE_FULL"
    http_status = 507


class EnvBuildError(FlowyardError):
    """A job's environment could not be built; the message carries the resolver's words."""

    code = "ENV_BUILD_FAILED"


class InterpreterNotFoundError(EnvBuildError):
    code = "INTERPRETER_NOT_FOUND"
    http_status = 400


_ALL: dict[str, type[FlowyardError]] = {}


def _collect(cls: type[FlowyardError]) -> None:
    _ALL[cls.code] = cls
    for sub in cls.__subclasses__():
        _collect(sub)


def error_from_payload(payload: dict[str, Any]) -> FlowyardError:
    """Rebuild the error a server answered with, as the same class when it is known."""
    if not _ALL:
        _collect(FlowyardError)
    cls = _ALL.get(str(payload.get("error_code")), FlowyardError)
    return cls(str(payload.get("message", "the workspace answered with an unknown error")))


class ComputeError(FlowyardError):
    """A compute target refused or failed an operation."""

    code = "COMPUTE_ERROR"
    http_status = 502


class ComputeUnavailableError(ComputeError):
    """The compute cannot be reached: an infrastructure failure, worth a retry."""

    code = "COMPUTE_UNAVAILABLE"
    http_status = 503
