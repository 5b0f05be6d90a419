"""The server processes serving this workspace, as runners reach them: each records itself from
its background loop, and a runner is given the others to fall back to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowyard.server.db.models import Replica, utc_now


def record(session: Session, url: str) -> None:
    """This replica, at ``url``, is serving now."""
    replica = session.get(Replica, url)
    if replica is None:
        session.add(Replica(url=url, seen_at=utc_now()))
    else:
        replica.seen_at = utc_now()
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # another process of this replica recorded it first: as good


def seen_since(session: Session, since: datetime) -> list[str]:
    """The URLs of the replicas seen serving since ``since``, the latest seen first."""
    query = sa.select(Replica.url).where(Replica.seen_at >= since).order_by(Replica.seen_at.desc())
    return list(session.scalars(query))


def fallbacks(first: str, replicas: Sequence[str]) -> tuple[str, ...]:
    """The URLs a runner given ``first`` falls back to: every replica's but that one."""
    first = first.rstrip("/")
    return tuple(dict.fromkeys(u.rstrip("/") for u in replicas if u.rstrip("/") != first))
