"""The one place the client side (SDK, CLI, backend plugin, runner) reaches into MLflow past its
documented API.

Flowyard checks and runs a project exactly as `mlflow run` would, and the rules for that live in
MLflow's private project code, not in its public API. Every such use is a small function here,
with a contract test in tests/test_mlflow_internals.py, so an MLflow release that changes one
fails one named test instead of a job. MLflow is imported inside each function: the runner and the
CLI import this module without paying for MLflow until they need it. Only mlflow-skinny is needed.
"""

from __future__ import annotations

from typing import Any


def fetch_project(uri: str, version: str | None) -> str:
    """The local folder holding the project at ``uri`` (a folder, or a git URI checked out at
    ``version``), as `mlflow run` fetches it.

    Wraps ``mlflow.projects.utils._fetch_project``: Flowyard snapshots the very files MLflow
    would run, fetched by MLflow's rules (subdirectory ``#`` syntax, git versions, zip URIs).
    Raises ``ExecutionException`` for a URI or version that cannot be fetched, git's failures
    included (MLflow lets those through as they are, e.g. for a mistyped local path).
    """
    from git.exc import GitError
    from mlflow.exceptions import ExecutionException
    from mlflow.projects.utils import _fetch_project

    try:
        return str(_fetch_project(uri=uri, version=version))
    except GitError as e:
        detail = " ".join(str(getattr(e, "stderr", "") or e).split())
        raise ExecutionException(f"git cannot fetch it ({detail})") from e


def load_project(work_dir: str) -> Any:
    """The project in ``work_dir`` as MLflow reads its MLproject file (or its absence).

    Wraps ``mlflow.projects.utils.load_project`` (an undocumented module): Flowyard reads the
    returned ``Project``'s ``docker_env``, ``env_type``, ``env_config_path`` and
    ``get_entry_point(name)``, and each entry point's ``parameters`` (``type``, ``default``) and
    ``compute_command(parameters, storage_dir)``. Raises ``ExecutionException`` for a bad MLproject.
    """
    from mlflow.projects.utils import load_project as mlflow_load_project

    return mlflow_load_project(work_dir)


def entry_point_names(project: Any) -> list[str]:
    """The entry points the project's MLproject file declares, sorted.

    Reads ``Project._entry_points``: MLflow offers no public list, and Flowyard names them in the
    error for a mistyped entry point, and tells them apart from a `.py`/`.sh` file entry point.
    """
    return sorted(project._entry_points)


def validate_parameters(entry_point: Any, parameters: dict[str, Any]) -> None:
    """Refuse ``parameters`` that leave one of the entry point's required parameters unset.

    Wraps ``EntryPoint._validate_parameters``: the check `mlflow run` makes before it starts, made
    here before anything is created in the workspace. Raises ``ExecutionException`` naming the
    missing parameters.
    """
    entry_point._validate_parameters(parameters)


def source_name(uri: str) -> str:
    """The ``mlflow.source.name`` tag MLflow's own backends give a run of the project at ``uri``:
    a local folder's git remote URL when it has one, else the absolute path; a remote URI as is.

    Wraps ``mlflow.projects.utils._expand_uri`` and ``_is_local_uri`` and
    ``mlflow.tracking._tracking_service.utils._get_git_url_if_present``, as
    ``mlflow.projects.utils._create_run`` combines them, so a Flowyard run is tagged as a local
    one would be.
    """
    from mlflow.projects.utils import _expand_uri, _is_local_uri
    from mlflow.tracking._tracking_service.utils import _get_git_url_if_present

    expanded = str(_expand_uri(uri))
    return str(_get_git_url_if_present(expanded)) if _is_local_uri(uri) else expanded


def entry_point_command(
    project_dir: str, entry_point: str, parameters: dict[str, Any], storage_dir: str
) -> list[str]:
    """The shell commands that run ``entry_point`` with ``parameters``, after downloading any
    remote `path` parameter into ``storage_dir``, as MLflow's local backend builds them.

    Wraps ``mlflow.projects.utils.load_project`` and ``get_entry_point_command`` (an undocumented
    module): the runner uses it only when a `path` parameter names a remote URI.
    """
    from mlflow.projects.utils import get_entry_point_command

    commands: list[str] = get_entry_point_command(
        load_project(project_dir), entry_point, parameters, storage_dir
    )
    return commands


def entry_point(name: str, parameters: dict[str, Any], command: str) -> Any:
    """MLflow's ``EntryPoint`` made from what a job stored at submit (its name, parameter specs
    and command template), so a re-run builds its command by MLflow's rules without the project.

    Wraps ``mlflow.projects._project_spec.EntryPoint`` (private): its constructor parses the
    parameter specs as an ``MLproject`` file's entry point would.
    """
    from mlflow.projects._project_spec import EntryPoint

    return EntryPoint(name, parameters, command)


def local_path_or_none(path_or_uri: str) -> str | None:
    """The local path ``path_or_uri`` names (a plain path or a `file:` URI), or None for a remote
    URI.

    Wraps ``mlflow.utils.file_utils.get_local_path_or_none``: a `path` parameter is checked and
    made absolute, or left for the runner to download, by the same rule as `mlflow run`.
    """
    from mlflow.utils.file_utils import get_local_path_or_none

    local: str | None = get_local_path_or_none(path_or_uri)
    return local


def is_uri(value: str) -> bool:
    """Whether ``value`` is a URI with a scheme.

    Wraps ``mlflow.utils.data_utils.is_uri``: a `uri` parameter is checked by MLflow's rule.
    """
    from mlflow.utils.data_utils import is_uri as mlflow_is_uri

    return bool(mlflow_is_uri(value))
