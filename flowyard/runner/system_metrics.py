"""MLflow's own system metrics (CPU, memory, disk, network, GPU where present) for a job's run.

The runner, not the entry point, runs MLflow's ``SystemMetricsMonitor`` for the job's run while
the entry point runs: it measures the machine the job runs on just as the monitor inside the job
would, but needs nothing in the job's environment (no MLflow, no psutil) and works for any entry
point, Python or not. The metrics are MLflow's (``system/cpu_utilization_percentage`` ...), so
MLflow's UI shows them in its System metrics tab as the studio does in its System tab.

On unless ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`` says false, in the job's environment variables
(one job) or in the runner's environment (a compute); ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``
(seconds, default 10) is read the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

ENABLE = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
INTERVAL = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"
DEFAULT_INTERVAL_S = 10.0
# How long the job's end waits for the last samples to be logged: MLflow's client retries a
# workspace that is away for minutes, and the job's result must not wait for its system metrics.
FINISH_WAIT_S = 10.0
_OFF = {"false", "0", "no", "off"}


def _setting(name: str, job_env: Mapping[str, str]) -> str | None:
    value = job_env.get(name)
    return value if value is not None else os.environ.get(name)


def enabled(job_env: Mapping[str, str]) -> bool:
    value = _setting(ENABLE, job_env)
    return value is None or value.strip().lower() not in _OFF


def interval_s(job_env: Mapping[str, str]) -> float:
    """The sampling interval asked for; the default for a value that is not a positive number."""
    try:
        value = float(_setting(INTERVAL, job_env) or DEFAULT_INTERVAL_S)
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value > 0 else DEFAULT_INTERVAL_S


class SystemMetrics:
    """Monitors the machine for a run from :meth:`start` to :meth:`finish`. MLflow is imported in
    a thread of its own, a second after the start: the entry point's start waits for nothing."""

    def __init__(
        self, run_id: str, tracking_uri: str, interval: float, say: Callable[[str], None]
    ) -> None:
        self.run_id, self.tracking_uri, self.interval, self.say = (
            run_id,
            tracking_uri,
            interval,
            say,
        )
        self._lock = threading.Lock()
        self._monitor: Any = None
        self._finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._start, name="system-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _start(self) -> None:
        # MLflow's import costs a second of CPU: a job over within a second never pays it, and a
        # longer one has started before it is paid.
        if self._stop.wait(min(1.0, self.interval)):
            return
        try:
            import psutil  # type: ignore[import-untyped]  # noqa: F401 (MLflow needs it)
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError as e:
            self.say(f"system metrics: off ({e}); install psutil where the runner runs")
            return
        # MLflow logs its monitor's start and stop at INFO, into the runner's own output.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        with self._lock:
            if self._finished:
                return
            monitor = SystemMetricsMonitor(self.run_id, tracking_uri=self.tracking_uri)
            monitor.sampling_interval = self.interval
            monitor.start()
            self._monitor = monitor
        self.say(f"system metrics: recording every {self.interval:g} s")

    def finish(self) -> None:
        """Stop, logging what was sampled since the last values were logged, waiting for that
        at most :data:`FINISH_WAIT_S`."""
        self._stop.set()
        with self._lock:
            self._finished = True
            monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        last = threading.Thread(target=monitor.finish, name="system-metrics-last", daemon=True)
        last.start()
        last.join(FINISH_WAIT_S)
        if last.is_alive():
            self.say(
                f"system metrics: the last samples were not logged within {FINISH_WAIT_S:g} s "
                "(the workspace did not answer); the job goes on without them"
            )
