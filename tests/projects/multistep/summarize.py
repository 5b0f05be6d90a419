import sys
from pathlib import Path

import mlflow

points = [float(line) for line in Path(sys.argv[1]).read_text().split()]
mlflow.log_metric("count", len(points))
mlflow.log_metric("total", sum(points))
