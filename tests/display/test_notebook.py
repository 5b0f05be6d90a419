"""The Azure sample's notebook, names changed, run in a real Jupyter kernel: the submitting cell
shows the job as a run table that updates, the last cell shows it again, and the saved notebook
holds the table, a readable log, and no `<... object at 0x...>`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tests.servers import Server

pytestmark = pytest.mark.slow

METRIC = r"mse <b>[\d.e+-]+</b>"
SAMPLE = Path(__file__).resolve().parents[1] / "projects" / "azure_sample"

# Azure's train-projects-remote notebook, cell by cell, `azureml` names changed to Flowyard's
# (its compute-creating cell is `flowyard compute create`, done by the workspace fixture).
CELLS = [
    "# Train using a compute cluster\nRun the MLflow project on `cpu-cluster`.",
    "import mlflow\nimport flowyard\nfrom flowyard import Workspace\n\n"
    'print("SDK version:", flowyard.__version__)',
    "ws = Workspace.from_config()",
    "tracking_uri = ws.get_mlflow_tracking_uri()\nmlflow.set_tracking_uri(tracking_uri)",
    'experiment_name = "train-project-amlcompute"\nmlflow.set_experiment(experiment_name)',
    'backend_config = {"COMPUTE": "cpu-cluster", "USE_CONDA": False}',
    'remote_mlflow_run = mlflow.projects.run(uri=".",\n'
    '                                    parameters={"alpha":0.3},\n'
    '                                    backend = "flowyard",\n'
    "                                    backend_config = backend_config,\n"
    "                                    synchronous=True)",
    "remote_mlflow_run",
]


def _notebook() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(CELLS[0]), *(new_code_cell(c) for c in CELLS[1:])]
    return new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )


def test_the_azure_sample_notebook_shows_the_run_table(
    workspace: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "sample"
    shutil.copytree(SAMPLE, project)
    monkeypatch.setenv("FLOWYARD_WORKSPACE_URL", workspace.url)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    nb = _notebook()
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    ).execute()
    saved = tmp_path / "train-projects-remote.ipynb"
    nbformat.write(nb, saved)
    text = saved.read_text()

    assert "object at 0x" not in text
    submitting, last = nb.cells[-2], nb.cells[-1]
    # The submitting cell: the snapshot's line, the table (updated in place to the job's end),
    # then the log.
    snapshot, table = [o.data for o in submitting.outputs if o.output_type == "display_data"]
    assert re.match(r"Snapshot [0-9a-f]{12}: 3 files, [\d,]+ bytes; sent", snapshot["text/plain"])
    html = table["text/html"]
    assert "<table>" in html and ">completed</b>" in html, html
    assert "cpu-cluster" in html
    assert re.search(METRIC, html), html
    assert f"{workspace.url}/studio/jobs/" in html
    assert re.match(r"Job [0-9a-f]{32} completed in [\d.]+ s on cpu-cluster", table["text/plain"])
    log = "".join(o.text for o in submitting.outputs if o.output_type == "stream")
    assert "alpha=0.3 mse=" in log
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", log), repr(log)
    # The last cell: the run, as a table again (and as text where HTML is not shown).
    [result] = last.outputs
    assert result.output_type == "execute_result"
    assert ">completed</b>" in result.data["text/html"]
    assert re.search(METRIC, result.data["text/html"])
    assert re.fullmatch(
        r"FlowyardSubmittedRun\(run_id='[0-9a-f]{32}', status='completed', "
        r"compute='cpu-cluster'\)",
        result.data["text/plain"],
    )
    json.loads(text)  # a notebook Jupyter can open
