"""MLflow's elastic-net example in small: fit, log, and register the model."""

import argparse

import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import ElasticNet

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float)
parser.add_argument("--model-name", default="")
args = parser.parse_args()

x = np.arange(40, dtype=float).reshape(20, 2)
y = x @ np.array([1.0, 2.0])
with mlflow.start_run():
    model = ElasticNet(alpha=args.alpha, random_state=0).fit(x, y)
    mlflow.log_param("fitted_alpha", args.alpha)
    mlflow.log_metric("loss", round(float(np.mean((model.predict(x) - y) ** 2)), 6))
    mlflow.set_tag("kind", "train")
    mlflow.sklearn.log_model(model, name="model", registered_model_name=args.model_name or None)
