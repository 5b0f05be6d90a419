"""A trial with a known objective: loss = (x - 2)^2 + (y + 1)^2 (+ 0.5 for kind 'bad'),
approached from above over `steps` steps (loss at step t is the final loss + 10 / (t + 1) - 10 /
steps), so a trial's last step is its result and a hopeless trial is hopeless from the start."""

import sys
import time

import mlflow

x, y, kind = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
steps, step_s, fail_if_over = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
final = (x - 2) ** 2 + (y + 1) ** 2 + (0.5 if kind == "bad" else 0.0)
if final > fail_if_over:
    sys.exit(f"loss {final} is over {fail_if_over}: failing on purpose")
with mlflow.start_run():
    for step in range(steps):
        mlflow.log_metric("loss", final + 10 / (step + 1) - 10 / steps, step=step)
        if step_s:
            time.sleep(step_s)
