"""The Azure ML sample "train with MLflow Projects on local compute", on Flowyard.

Only the names changed: `flowyard.Workspace` for `azureml.core.Workspace`, and
`backend="flowyard"` for `backend="azureml"`. Run it from this folder after `make demo` (or
`flowyard workspace init` and `flowyard server`).
"""

from pathlib import Path

import mlflow

from flowyard import Workspace

ws = Workspace.from_config()
mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
mlflow.set_experiment("experiment-with-mlflow-projects")

backend_config = {"USE_CONDA": False}
local_run = mlflow.projects.run(
    uri=str(Path(__file__).parent / "sklearn_elasticnet"),
    parameters={"alpha": 0.3},
    backend="flowyard",
    backend_config=backend_config,
)
print(f"run {local_run.run_id}: {local_run.get_status()}")
