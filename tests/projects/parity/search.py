"""A parent run that searches: nested child runs, an inner project run, a search, a side run."""

import argparse

import mlflow
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

parser = argparse.ArgumentParser()
parser.add_argument("--label")
parser.add_argument("--model-name")
parser.add_argument("--trials", type=float)
args = parser.parse_args()
client = MlflowClient()

with mlflow.start_run() as parent:
    experiment = client.get_experiment(parent.info.experiment_id)
    mlflow.set_experiment(experiment.name)
    mlflow.set_tag("parity.label", args.label)
    for i in range(int(args.trials)):
        with mlflow.start_run(nested=True, run_name=f"child-{i}"):
            alpha = round(0.1 * (i + 1), 2)
            mlflow.log_param("alpha", alpha)
            mlflow.log_metric("loss", 1 - alpha)
            mlflow.set_tag("kind", "trial")
    # As MLflow's hyperparam example does: a child run made by hand, then the project's other
    # entry point run into it.
    inner = client.create_run(
        experiment.experiment_id,
        tags={MLFLOW_PARENT_RUN_ID: parent.info.run_id},
        run_name="inner-train",
    )
    mlflow.projects.run(
        ".",
        entry_point="train",
        parameters={"alpha": 0.4, "model_name": args.model_name},
        run_id=inner.info.run_id,
        experiment_id=experiment.experiment_id,
        env_manager="local",
        synchronous=True,
    )
    children = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )
    mlflow.log_metric("children", len(children))
    mlflow.log_metric("best_loss", min(r.data.metrics["loss"] for r in children))
    side = mlflow.set_experiment(f"{experiment.name}-side")
    run = client.create_run(side.experiment_id, run_name="side")
    client.log_metric(run.info.run_id, "side_metric", 7.0)
    client.set_tag(run.info.run_id, "kind", "side")
    client.set_terminated(run.info.run_id)
    mlflow.set_experiment(experiment.name)
    print(f"searched {len(children)} children")
