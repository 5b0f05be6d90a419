import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import LogisticRegression

x = np.array([-2, -1, 0, 1, 2, 1]).reshape(-1, 1)
y = np.array([0, 0, 1, 1, 1, 0])
model = LogisticRegression().fit(x, y)
score = model.score(x, y)
print(f"Score: {score}")
mlflow.log_metric("score", score)
with open("report.txt", "w") as f:
    f.write(f"score {score}\n")
mlflow.log_artifact("report.txt")
info = mlflow.sklearn.log_model(model, name="model")
mlflow.set_tag("model_id", "logged" if info.model_id else "none")
