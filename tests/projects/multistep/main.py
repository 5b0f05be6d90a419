import argparse
from pathlib import Path

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--ratio", type=float)
parser.add_argument("--steps", type=int)
parser.add_argument("--data")
parser.add_argument("--source")
args = parser.parse_args()
points = [float(line) for line in Path(args.data).read_text().split()]
for step in range(args.steps):
    mlflow.log_metric("scaled", sum(points) * args.ratio * (step + 1), step=step)
mlflow.set_tag("source_scheme", args.source.split(":", 1)[0])
mlflow.set_tag("data_name", Path(args.data).name)
