import sys

import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import ElasticNet
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

alpha, l1_ratio, model_name = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(42)
x = rng.normal(size=(200, 4))
y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=200)
with mlflow.start_run():
    model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(x[:150], y[:150])
    predicted = model.predict(x[150:])
    mlflow.log_param("alpha", alpha)
    mlflow.log_param("l1_ratio", l1_ratio)
    mlflow.log_metric("rmse", round(float(np.sqrt(mean_squared_error(y[150:], predicted))), 6))
    mlflow.log_metric("r2", round(float(r2_score(y[150:], predicted)), 6))
    mlflow.log_metric("mae", round(float(mean_absolute_error(y[150:], predicted)), 6))
    mlflow.sklearn.log_model(model, name="model", registered_model_name=model_name)
