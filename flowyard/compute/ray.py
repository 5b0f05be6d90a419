"""`ray`: runners as Ray jobs on an existing Ray cluster, through its Job Submission API."""

from __future__ import annotations

from typing import Any

from flowyard.compute.base import (
    ComputeTarget,
    ContainerPolicy,
    ExternalState,
    Health,
    RunnerCommand,
)
from flowyard.errors import ComputeError, ComputeUnavailableError


def _client(address: str) -> Any:
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as e:
        raise ComputeError(
            "Ray is not installed where the workspace server runs; install 'flowyard[ray]'."
        ) from e
    try:
        return JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ComputeUnavailableError(
            f"The Ray cluster at {address} does not answer ({e}); check that it runs and that "
            "its dashboard address is right."
        ) from e


class RayTarget(ComputeTarget):
    """The runner is the Ray job's entrypoint, with the job's CPUs, GPUs and memory reserved for
    it. The runner pulls its snapshot from the workspace, so nothing goes through Ray's
    ``working_dir`` and its size cap."""

    def __init__(
        self,
        name: str,
        address: str,
        settings: dict[str, Any],
        containers: ContainerPolicy | None = None,
    ) -> None:
        super().__init__(name, containers)
        self.address = address
        self.settings = settings
        self._cached: Any = None

    @property
    def isolation_detail(self) -> str:
        return (
            "none on the cluster: the runner is a Ray job in the cluster's workers, as their "
            "user, with only its job token from the workspace; the workspace host's files are "
            "out of its reach unless the cluster runs on that host"
        )

    @property
    def _ray(self) -> Any:
        if self._cached is None:
            self._cached = _client(self.address)
        return self._cached

    def submit(self, command: RunnerCommand) -> str:
        resources = {**self.settings.get("resources", {}), **command.resources}
        python = self.settings.get("python", "python")
        submission_id = f"flowyard-{command.job_id}-{command.attempt}"
        # The job's token alone, and for a container job the engine named for the compute: the
        # runner's other variables are the cluster's.
        env = {**command.env, **(self.containers.runner_env() if command.container else {})}
        try:
            return str(
                self._ray.submit_job(
                    entrypoint=" ".join([python, *command.argv]),
                    submission_id=submission_id,
                    entrypoint_num_cpus=resources.get("num_cpus", 1),
                    entrypoint_num_gpus=resources.get("num_gpus", 0),
                    entrypoint_memory=int(resources.get("memory", 0)) or None,
                    metadata={"flowyard_job": command.job_id},
                    runtime_env={"env_vars": env} if env else None,
                )
            )
        except (ConnectionError, OSError) as e:
            self._cached = None
            raise ComputeUnavailableError(f"Ray at {self.address} did not answer: {e}.") from e
        except RuntimeError as e:
            raise ComputeError(f"Ray at {self.address} refused the job: {e}.") from e

    def poll(self, external_id: str) -> ExternalState:
        from ray.job_submission import JobStatus

        try:
            status = self._ray.get_job_status(external_id)
        except RuntimeError:
            return ExternalState.GONE
        except (ConnectionError, OSError) as e:
            self._cached = None
            raise ComputeUnavailableError(f"Ray at {self.address} did not answer: {e}.") from e
        if status == JobStatus.PENDING:
            return ExternalState.PENDING
        if status == JobStatus.RUNNING:
            return ExternalState.RUNNING
        return ExternalState.ENDED

    def cancel(self, external_id: str) -> None:
        try:
            self._ray.stop_job(external_id)
        except RuntimeError:
            return  # no such job, or already stopped
        except (ConnectionError, OSError) as e:
            self._cached = None
            raise ComputeUnavailableError(f"Ray at {self.address} did not answer: {e}.") from e

    def health(self) -> Health:
        try:
            from ray.util import state

            nodes = state.list_nodes(address=self.address, raise_on_missing_output=False)
        except Exception as e:
            return Health(False, f"Ray at {self.address} does not answer: {e}")
        alive = [n for n in nodes if getattr(n, "state", "") == "ALIVE"]
        total: dict[str, float] = {}
        for node in alive:
            for key, value in (getattr(node, "resources_total", None) or {}).items():
                total[key] = total.get(key, 0) + value
        return Health(
            True,
            f"{len(alive)} node(s) alive",
            {"nodes": len(alive), "cpus": total.get("CPU", 0), "gpus": total.get("GPU", 0)},
        )
