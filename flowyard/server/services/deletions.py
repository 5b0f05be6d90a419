"""Deleting jobs and experiments for good: the job's rows (log, events, job) and its MLflow run,
artifacts included, through MLflow's own soft delete and `gc` machinery (``runs.purge_run``).

A job that has not ended is never deleted: its runner would go on writing into a run that is
gone. Deleting one asks for a cancel first; a deletion by filter leaves such jobs and says so.
Every step tolerates what an earlier, interrupted deletion already removed, so a deletion that
failed halfway is finished by asking again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard import paths
from flowyard.errors import ConflictError, InvalidRequestError
from flowyard.schemas import JobStatus
from flowyard.server.db.models import Job, JobEvent, LogChunk
from flowyard.server.services import jobs, runs
from flowyard.server.services.runs import Freed
from flowyard.server.settings import ServerSettings

# Jobs read per page while many are deleted: memory stays bounded whatever the filter matches.
_PAGE = 200
FINAL = tuple(s.value for s in JobStatus if s.is_final)


@dataclass
class Deleted:
    """What a deletion removed: jobs, MLflow runs, artifact files and bytes, log bytes; and the
    jobs it left because they have not ended."""

    job_ids: list[str] = field(default_factory=list)
    runs: int = 0
    artifact_files: int = 0
    artifact_bytes: int = 0
    log_bytes: int = 0
    left_active: list[str] = field(default_factory=list)

    def add(self, freed: Freed) -> None:
        self.runs += freed.runs
        self.artifact_files += freed.files
        self.artifact_bytes += freed.bytes


def _refuse_active(job: Job) -> None:
    raise ConflictError(
        f"Job {job.id} is {job.status}; cancel it first (`flowyard job cancel {job.id}`) and "
        "delete it once it has ended."
    )


def delete_job(session: Session, job_id: str, settings: ServerSettings) -> Deleted:
    """Delete an ended job and its run for good.

    Raises:
        NotFoundError: no such job.
        ConflictError: the job has not ended.
    """
    job = jobs.get(session, job_id)
    if not JobStatus(job.status).is_final:
        _refuse_active(job)
    done = Deleted()
    delete_ended(session, job, settings, done)
    return done


def delete_ended(session: Session, job: Job, settings: ServerSettings, done: Deleted) -> None:
    """Delete an ended job and its run, adding what went to ``done``."""
    job_id, log_size = job.id, job.log_size
    # The run first: a failure here leaves the job, whose deletion can be asked again.
    done.add(runs.purge_run(job_id, settings.artifacts_destination))
    # Conditional on the job having ended, so a job re-queued meanwhile is never deleted.
    session.execute(sa.delete(LogChunk).where(LogChunk.job_id == job_id))
    session.execute(sa.delete(JobEvent).where(JobEvent.job_id == job_id))
    gone = session.execute(
        sa.delete(Job)
        .where(Job.id == job_id, Job.status.in_(FINAL))
        .execution_options(synchronize_session=False)
    )
    session.commit()
    if getattr(gone, "rowcount", 1):
        done.job_ids.append(job_id)
        done.log_bytes += log_size
    # A runner of this host leaves the job's folder behind when it is killed.
    shutil.rmtree(paths.job_dir(job_id), ignore_errors=True)


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a deletion by filter takes; at least one field must be given."""

    status: JobStatus | None = None
    experiment_id: str | None = None
    compute: str | None = None
    user: str | None = None
    ended_before: datetime | None = None

    def check(self) -> None:
        if self == JobFilter():
            raise InvalidRequestError(
                "Deleting jobs needs a filter (status, experiment_id, compute, user or "
                "ended_before); name one, or delete the experiment to delete all its jobs."
            )
        if self.status is not None and not self.status.is_final:
            raise InvalidRequestError(
                f"Jobs that are {self.status} have not ended and cannot be deleted; filter by "
                f"one of {', '.join(FINAL)}, or cancel them first."
            )

    def where(self) -> list[sa.ColumnElement[bool]]:
        found: list[sa.ColumnElement[bool]] = []
        if self.status is not None:
            found.append(Job.status == self.status.value)
        if self.experiment_id is not None:
            found.append(Job.experiment_id == self.experiment_id)
        if self.compute is not None:
            found.append(Job.compute == self.compute)
        if self.user is not None:
            found.append(Job.user == self.user)
        if self.ended_before is not None:
            found.append(Job.ended_at < self.ended_before)
        return found


def delete_jobs(session: Session, wanted: JobFilter, settings: ServerSettings) -> Deleted:
    """Delete every ended job the filter matches; the ones not ended are left, and named."""
    wanted.check()
    done = Deleted()
    done.left_active = list(
        session.scalars(sa.select(Job.id).where(*wanted.where(), Job.status.notin_(FINAL)))
    )
    _delete_matching(session, wanted.where(), settings, done)
    return done


def _delete_matching(
    session: Session, where: list[sa.ColumnElement[bool]], settings: ServerSettings, done: Deleted
) -> None:
    after = ""
    while True:
        page = list(
            session.scalars(
                sa.select(Job)
                .where(*where, Job.status.in_(FINAL), Job.id > after)
                .order_by(Job.id)
                .limit(_PAGE)
            )
        )
        if not page:
            return
        for job in page:
            delete_ended(session, job, settings, done)
        after = page[-1].id
        session.expunge_all()


def delete_experiment(session: Session, experiment_id: str, settings: ServerSettings) -> Deleted:
    """Delete an experiment for good: its jobs, every run in it (jobs' or not), its artifacts.

    Raises:
        NotFoundError: no such experiment.
        ConflictError: a job of the experiment has not ended, or it is MLflow's default one.
    """
    runs.get_experiment(experiment_id)
    if experiment_id == "0":
        raise ConflictError(
            "Experiment 0 is MLflow's default experiment and cannot be deleted; delete its jobs "
            "with `flowyard job delete --experiment-id 0` instead."
        )
    active = list(
        session.scalars(
            sa.select(Job.id).where(Job.experiment_id == experiment_id, Job.status.notin_(FINAL))
        )
    )
    if active:
        shown = ", ".join(active[:5]) + (f" and {len(active) - 5} more" if len(active) > 5 else "")
        raise ConflictError(
            f"Experiment {experiment_id} has jobs that have not ended ({shown}); cancel them "
            "first, then delete the experiment."
        )
    done = Deleted()
    _delete_matching(session, [Job.experiment_id == experiment_id], settings, done)
    # Runs that are no job's: made by hand, or nested in a job's.
    for run_id in list(runs.experiment_run_ids(experiment_id)):
        done.add(runs.purge_run(run_id, settings.artifacts_destination))
    done.add(runs.purge_experiment(experiment_id, settings.artifacts_destination))
    return done
