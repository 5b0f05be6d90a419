"""A job's artifacts for the studio: every file its run logged (``./outputs``, logs, anything
logged with MLflow) and the files of the models it logged (MLflow 3 keeps a logged model's
artifacts beside the run's, not in them), listed and read through MLflow's artifact repositories
in the workspace's store, as MLflow's artifact proxy reads them.

A preview reads only the first bytes of a file: a big output is never sent whole to be cut in
the page.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.server.services import runs
from flowyard.server.settings import ServerSettings

# A listing stops here: a run that logged more is cut, and says so.
MAX_FILES = 2000
# A preview's bytes at most; the download has the rest.
MAX_HEAD = 1024 * 1024


@dataclass(frozen=True)
class Artifact:
    """A file: its path inside its root, its size, and the logged model it belongs to (None:
    the run's own artifacts)."""

    path: str
    size: int
    model: str | None = None


@dataclass(frozen=True)
class Listing:
    files: list[Artifact]
    # Logged models by id: their names, in the order they were logged.
    models: dict[str, str]
    cut: bool


def _repository(uri: str, settings: ServerSettings) -> Any:
    if not uri.startswith(f"{runs.STORE_SCHEME}:"):
        raise InvalidRequestError(
            f"These artifacts live at {uri!r}, outside the workspace's artifact store, which "
            "the studio does not read; download them with MLflow's client."
        )
    return runs.artifact_repository(uri, settings.artifacts_destination)


def _models(run_id: str, experiment_id: str) -> list[Any]:
    """The models the run logged (MLflow 3's logged models whose source is the run)."""
    try:
        found = runs.tracking_store().search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
    except MlflowException:
        return []
    return sorted(found, key=lambda m: (m.creation_timestamp or 0, m.model_id))


def _walk(repository: Any, limit: int, model: str | None) -> tuple[list[Artifact], bool]:
    found: list[Artifact] = []
    todo: list[str | None] = [None]
    while todo:
        try:
            infos = repository.list_artifacts(todo.pop())
        except (MlflowException, OSError):
            continue  # a folder gone while listing
        for info in infos:
            if info.is_dir:
                todo.append(info.path)
            elif len(found) >= limit:
                return found, True
            else:
                found.append(Artifact(info.path, info.file_size or 0, model))
    return found, False


def listing(
    settings: ServerSettings, run_id: str, experiment_id: str, limit: int = MAX_FILES
) -> Listing:
    """Every file of the run's artifacts and of its logged models, by root then path; at most
    ``limit`` files."""
    files, cut = _walk(_repository(runs.artifact_uri(run_id), settings), limit, None)
    files.sort(key=lambda f: f.path)
    models: dict[str, str] = {}
    for model in _models(run_id, experiment_id):
        if cut:
            break
        try:
            repository = _repository(model.artifact_location, settings)
        except InvalidRequestError:
            continue  # kept outside the store (logged before the workspace refused that)
        models[model.model_id] = model.name
        more, cut = _walk(repository, limit - len(files), model.model_id)
        files.extend(sorted(more, key=lambda f: f.path))
    return Listing(files, models, cut)


def _root_uri(run_id: str, experiment_id: str, model: str | None) -> str:
    if model is None:
        return runs.artifact_uri(run_id)
    for found in _models(run_id, experiment_id):
        if found.model_id == model:
            return str(found.artifact_location)
    raise NotFoundError(f"Run {run_id} logged no model {model}; pick one from its artifacts.")


def head(
    settings: ServerSettings,
    run_id: str,
    experiment_id: str,
    path: str,
    limit: int,
    model: str | None = None,
) -> tuple[bytes, int]:
    """The first ``limit`` bytes of an artifact (``path`` checked by the caller with the
    artifact path guard), and its whole size."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repository = _repository(_root_uri(run_id, experiment_id, model), settings)
    missing = NotFoundError(f"Run {run_id} has no artifact {path!r}; pick one from its list.")
    if isinstance(repository, LocalArtifactRepository):
        root = Path(repository.artifact_dir).resolve()
        file = (root / path).resolve()
        # The guard refuses '..'; a link inside the store must not lead out of the run either.
        if not file.is_relative_to(root) or not file.is_file():
            raise missing
        with file.open("rb") as f:
            return f.read(limit), file.stat().st_size
    # A store elsewhere (an object store): MLflow fetches the file whole; only its head is sent.
    folder = tempfile.mkdtemp(prefix="flowyard-artifact-")
    try:
        try:
            local = Path(repository.download_artifacts(path, folder))
        except (MlflowException, OSError) as e:
            raise missing from e
        if not local.is_file():
            raise missing
        with local.open("rb") as f:
            return f.read(limit), local.stat().st_size
    finally:
        shutil.rmtree(folder, ignore_errors=True)
