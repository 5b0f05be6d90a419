"""Flowyard's errors as MLflow's project API raises them.

``mlflow.projects.run`` raises :class:`~mlflow.exceptions.ExecutionException` for a project it
cannot run, and code written for ``backend="local"`` (or Azure's backend) catches that. Errors
Flowyard raises through MLflow are made instances of both their own class and
``ExecutionException``, with the same one-sentence message: ``except ExecutionException``,
``except MlflowException`` and ``except FlowyardError`` (or a subclass) all catch them.
"""

from __future__ import annotations

from mlflow.exceptions import ExecutionException

from flowyard.errors import FlowyardError

_BOTH: dict[type[FlowyardError], type[FlowyardError]] = {}


def as_execution_exception(error: FlowyardError) -> FlowyardError:
    """``error`` again, as an instance of its class and of ``ExecutionException``."""
    if isinstance(error, ExecutionException):
        return error  # type: ignore[no-any-return]
    base = type(error)
    cls = _BOTH.get(base)
    if cls is None:
        attrs = {"__module__": base.__module__, "__qualname__": base.__qualname__}
        cls = _BOTH[base] = type(base.__name__, (base, ExecutionException), attrs)
    both = cls.__new__(cls)
    ExecutionException.__init__(both, error.message)  # sets MLflow's error_code and args
    both.__dict__.update(error.__dict__)
    return both
