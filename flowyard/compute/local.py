"""`local`: the runner starts on the machine that submits the job, as the submitting user."""

from __future__ import annotations

from flowyard.compute.base import ComputeTarget, ExternalState, Health, RunnerCommand
from flowyard.errors import ComputeError
from flowyard.jobspec import EnvironmentSpec

NAME = "local"


class LocalTarget(ComputeTarget):
    """The compute every workspace has without registering it. Its jobs skip the queue: the
    submitting machine starts their runner at once (:func:`flowyard.compute.launcher.start`),
    and the workspace only hears that runner's reports and heartbeats."""

    starts_runners = False

    def __init__(self) -> None:
        super().__init__(NAME)

    @property
    def isolation_detail(self) -> str:
        return (
            "none: runs as the submitting user on their own machine, with their environment "
            "and files"
        )

    def check_environment(self, spec: EnvironmentSpec) -> None:
        """Anything goes: the job runs as its submitter on their own machine, whose engine,
        image and volumes the submitting side has checked."""

    @property
    def containers_detail(self) -> str:
        return "yes, with the submitting machine's Podman or Docker; any volume and docker_args"

    def submit(self, command: RunnerCommand) -> str:
        raise ComputeError(
            f"Job {command.job_id} runs on compute local, whose runner starts on the machine "
            "that submitted it; submit it again from that machine."
        )

    def poll(self, external_id: str) -> ExternalState:
        # Never started here, so never known here: its heartbeat is all the workspace has.
        return ExternalState.GONE

    def cancel(self, external_id: str) -> None:
        """Nothing to stop from here: the runner sees the cancel at its next heartbeat."""

    def health(self) -> Health:
        return Health(True, "runs on each submitting machine; each job's runner reports")
