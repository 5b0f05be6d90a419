"""Retention: which ended jobs a policy lets go, per workspace and per experiment.

A policy has two rules, each keeping jobs: the ones that ended in the last ``keep_days`` days,
and the newest ``keep_last`` ended jobs of the experiment (by submission). A job goes when no
rule keeps it and the policy sets at least one. Whatever the policy, a job stays when its run
is tagged ``flowyard.keep=true`` or is the source of a registered model version, and a job that
has not ended is never touched. An experiment's own policy replaces the workspace's for it.

Policies live in the workspace's settings table (one JSON value): setting one is an owner's
call, unlike an MLflow tag, which any contributor may set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.schemas import RetentionOut, RetentionPolicy
from flowyard.server import mlflow_internals
from flowyard.server.db.models import Job, Setting, utc_now
from flowyard.server.services import deletions, runs
from flowyard.server.settings import ServerSettings

KEEP_TAG = "flowyard.keep"
_KEEP_VALUES = frozenset({"true", "1", "yes"})
_SETTING = "retention"
_PAGE = 500


@dataclass(frozen=True)
class Rules:
    keep_days: float | None = None
    keep_last: int | None = None

    @property
    def limits(self) -> bool:
        return self.keep_days is not None or self.keep_last is not None


def expired(
    ranked: Sequence[tuple[str, datetime | None]], first_rank: int, rules: Rules, now: datetime
) -> list[str]:
    """Of ended jobs ranked newest first (``ranked[0]`` at rank ``first_rank``), with when each
    ended, the ones no rule keeps."""
    if not rules.limits:
        return []
    cutoff = now - timedelta(days=rules.keep_days) if rules.keep_days is not None else None
    gone = []
    for rank, (job_id, ended_at) in enumerate(ranked, start=first_rank):
        if rules.keep_last is not None and rank < rules.keep_last:
            continue
        if cutoff is not None and (ended_at is None or ended_at >= cutoff):
            continue
        gone.append(job_id)
    return gone


@dataclass
class Policies:
    workspace: Rules = Rules()
    experiments: dict[str, Rules] = field(default_factory=dict)

    def for_experiment(self, experiment_id: str) -> Rules:
        return self.experiments.get(experiment_id, self.workspace)


def _rules(policy: RetentionPolicy) -> Rules:
    return Rules(policy.keep_days, policy.keep_last)


def _policy(rules: Rules) -> RetentionPolicy:
    return RetentionPolicy(keep_days=rules.keep_days, keep_last=rules.keep_last)


def load(session: Session) -> Policies:
    stored = session.get(Setting, _SETTING)
    if stored is None:
        return Policies()
    out = RetentionOut.model_validate(json.loads(stored.value))
    return Policies(_rules(out.workspace), {e: _rules(p) for e, p in out.experiments.items()})


def shown(policies: Policies) -> RetentionOut:
    return RetentionOut(
        workspace=_policy(policies.workspace),
        experiments={e: _policy(r) for e, r in sorted(policies.experiments.items())},
    )


def _save(session: Session, policies: Policies) -> RetentionOut:
    out = shown(policies)
    session.merge(Setting(key=_SETTING, value=out.model_dump_json()))
    session.commit()
    return out


def set_policy(
    session: Session, policy: RetentionPolicy, experiment_id: str | None = None
) -> RetentionOut:
    """Set the workspace's policy, or one experiment's (which must exist)."""
    policies = load(session)
    if experiment_id is None:
        policies.workspace = _rules(policy)
    else:
        runs.get_experiment(experiment_id)
        policies.experiments[experiment_id] = _rules(policy)
    return _save(session, policies)


def clear_policy(session: Session, experiment_id: str) -> RetentionOut:
    """An experiment follows the workspace's policy again."""
    policies = load(session)
    policies.experiments.pop(experiment_id, None)
    return _save(session, policies)


def _kept(session: Session, job_ids: list[str]) -> set[str]:
    tagged = mlflow_internals.runs_tagged(session, job_ids, KEEP_TAG)
    keep = {j for j, v in tagged.items() if v.strip().lower() in _KEEP_VALUES}
    return keep | mlflow_internals.model_source_runs(session, job_ids)


def apply(
    session: Session,
    settings: ServerSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> deletions.Deleted:
    """Delete (on a dry run: count) the ended jobs their policy lets go, experiment by
    experiment, a page at a time."""
    now = now or utc_now()
    policies = load(session)
    done = deletions.Deleted()
    experiments = list(
        session.scalars(
            sa.select(Job.experiment_id).where(Job.status.in_(deletions.FINAL)).distinct()
        )
    )
    for experiment_id in experiments:
        rules = policies.for_experiment(experiment_id)
        if not rules.limits:
            continue
        rank = 0
        after: tuple[datetime, str] | None = None
        while True:
            query = (
                sa.select(Job.id, Job.ended_at, Job.submitted_at, Job.log_size)
                .where(Job.experiment_id == experiment_id, Job.status.in_(deletions.FINAL))
                .order_by(Job.submitted_at.desc(), Job.id.desc())
                .limit(_PAGE)
            )
            if after is not None:
                query = query.where(sa.tuple_(Job.submitted_at, Job.id) < after)
            page = session.execute(query).all()
            session.commit()
            if not page:
                break
            after = (page[-1].submitted_at, page[-1].id)
            gone = expired([(r.id, r.ended_at) for r in page], rank, rules, now)
            rank += len(page)
            keep = _kept(session, gone) if gone else set()
            session.commit()
            for job_id in (j for j in gone if j not in keep):
                if dry_run:
                    done.job_ids.append(job_id)
                    continue
                job = session.get(Job, job_id)
                if job is not None:
                    deletions.delete_ended(session, job, settings, done)
    return done
