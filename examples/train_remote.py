"""The Azure ML sample "train with MLflow Projects on a compute cluster", on Flowyard.

Only the names changed: `flowyard.Workspace` for `azureml.core.Workspace`, and
`backend="flowyard"` for `backend="azureml"`. `cpu-cluster` is a compute registered in the
workspace (`make demo` creates one of type `process`; see the README to attach a Ray cluster).
"""

from pathlib import Path

import mlflow

from flowyard import Workspace

ws = Workspace.from_config()
mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
mlflow.set_experiment("train-mlflow-project-amlcompute")

backend_config = {"COMPUTE": "cpu-cluster", "USE_CONDA": False}
remote_run = mlflow.projects.run(
    uri=str(Path(__file__).parent / "sklearn_elasticnet"),
    parameters={"alpha": 0.3},
    backend="flowyard",
    backend_config=backend_config,
)
print(f"run {remote_run.run_id}: {remote_run.get_status()}")
