"""Train an ElasticNet on scikit-learn's diabetes data (it ships with scikit-learn: no download).

Logs the parameters, an evaluation per training step, and writes the model and its metrics to
./outputs, which Flowyard uploads to the run's outputs/.
"""

import argparse
import json
import pickle
import warnings
from pathlib import Path

import mlflow
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--l1-ratio", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=42)

    # One coordinate-descent pass per step, continuing from the last: a metric curve per step.
    model = ElasticNet(
        alpha=args.alpha, l1_ratio=args.l1_ratio, max_iter=1, warm_start=True, random_state=42
    )
    # Under `mlflow run` or Flowyard this resumes the run they created (and logged the
    # parameters of); run by hand, it starts a new one.
    with mlflow.start_run():
        for step in range(args.steps):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x_train, y_train)
            predicted = model.predict(x_test)
            rmse = float(np.sqrt(mean_squared_error(y_test, predicted)))
            mae = float(mean_absolute_error(y_test, predicted))
            r2 = float(r2_score(y_test, predicted))
            mlflow.log_metrics({"rmse": rmse, "mae": mae, "r2": r2}, step=step)
            print(f"step {step:3d}  rmse={rmse:.3f}  mae={mae:.3f}  r2={r2:.3f}")

        outputs = Path("outputs")
        outputs.mkdir(exist_ok=True)
        with (outputs / "model.pkl").open("wb") as f:
            pickle.dump(model, f)
        summary = {
            "alpha": args.alpha,
            "l1_ratio": args.l1_ratio,
            "rmse": rmse,
            "mae": mae,
            "r2": r2,
        }
        (outputs / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"ElasticNet(alpha={args.alpha}, l1_ratio={args.l1_ratio}): rmse={rmse:.3f}")


if __name__ == "__main__":
    main()
