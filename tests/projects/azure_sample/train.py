# The Azure sample's train.py, with its wine data replaced by data it makes.
import sys

import mlflow
import numpy as np
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error

alpha = float(sys.argv[1]) if len(sys.argv) > 1 else 0.5
rng = np.random.default_rng(7)
x = rng.normal(size=(100, 3))
y = x @ np.array([0.5, 1.5, -1.0])
with mlflow.start_run():
    model = Ridge(alpha=alpha).fit(x, y)
    mse = mean_squared_error(y, model.predict(x))
    mlflow.log_param("alpha", alpha)
    mlflow.log_metric("mse", round(float(mse), 6))
    print(f"alpha={alpha} mse={mse:.4f}")
