"""Users, tokens and the principals requests act as, stored in the workspace database."""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.errors import ConflictError, InvalidRequestError, NotFoundError
from flowyard.names import check_portable_name
from flowyard.schemas import JobStatus
from flowyard.server.auth.policy import JobFacts
from flowyard.server.auth.tokens import Keys, Role, UserToken
from flowyard.server.db.models import Job, Token, User, utc_now


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user with a role, or a job, which acts for its submitter as a
    contributor while its attempt is live."""

    user: str
    role: Role
    token_id: str | None = None
    job: JobFacts | None = None

    @property
    def label(self) -> str:
        return f"job {self.job.id}" if self.job else f"{self.user} ({self.role.label})"


# Auth switched off (a loopback-only workspace started with --no-auth): everyone is an owner.
ANONYMOUS = Principal(user="anonymous", role=Role.OWNER)


class _TTLCache:
    """A small per-process memo, so a token costs one query per few seconds, not per request.
    Revoking a token forgets it here at once; other server processes forget it within the TTL."""

    def __init__(self, ttl_s: float, size: int = 4096) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._data: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> object | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._data.pop(key, None)
                return None
            return hit[1]

    def put(self, key: str, value: object) -> None:
        with self._lock:
            if len(self._data) >= self.size:
                self._data.clear()
            self._data[key] = (time.monotonic() + self.ttl_s, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_principals = _TTLCache(ttl_s=2.0)


def cached(raw: str) -> Principal | None:
    """A user token's principal if this process checked it in the last seconds (no I/O)."""
    hit = _principals.get(raw)
    return hit if isinstance(hit, Principal) else None


def resolve(session: Session, keys: Keys, raw: str) -> Principal | None:
    """The principal a bearer token stands for, or None when it is unknown, expired, revoked,
    or a job token whose attempt is over."""
    if parsed := keys.parse_job_token(raw):
        return _job_principal(session, *parsed)
    token = UserToken.parse(raw)
    if token is None:
        return None
    if hit := cached(raw):
        return hit
    row = session.get(Token, token.id)
    if row is None or not hmac.compare_digest(row.secret_sha256, token.sha256):
        return None
    principal = _valid(row)
    if principal is not None and _cacheable(row):
        _principals.put(raw, principal)
    return principal


def cached_id(token_id: str) -> Principal | None:
    """A studio session's principal if this process checked its token in the last seconds."""
    return cached(f"id:{token_id}")


def resolve_id(session: Session, token_id: str) -> Principal | None:
    """The principal of a studio session, which keeps its token's id (not the token)."""
    key = f"id:{token_id}"
    if hit := cached(key):
        return hit
    row = session.get(Token, token_id) if token_id else None
    principal = _valid(row)
    if principal is not None and row is not None and _cacheable(row):
        _principals.put(key, principal)
    return principal


def _cacheable(row: Token) -> bool:
    """Cached no longer than the token lives."""
    expires = row.expires_at
    return expires is None or (expires - utc_now()).total_seconds() > _principals.ttl_s


def _valid(row: Token | None) -> Principal | None:
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utc_now():
        return None
    return Principal(user=row.user, role=Role.parse(row.role), token_id=row.id)


def _job_principal(session: Session, job_id: str, attempt: int) -> Principal | None:
    row = session.execute(
        sa.select(Job.status, Job.attempt, Job.user).where(Job.id == job_id)
    ).one_or_none()
    if row is None or row.attempt != attempt or JobStatus(row.status).is_final:
        return None
    return Principal(
        user=row.user,
        role=Role.CONTRIBUTOR,
        job=JobFacts(id=job_id),
    )


# --- users and tokens -------------------------------------------------------------------------


def create_user(session: Session, name: str) -> User:
    if session.get(User, name) is not None:
        raise ConflictError(f"A user named {name!r} already exists; pick another name.")
    user = _add_user(session, name)
    session.commit()
    return user


def _add_user(session: Session, name: str) -> User:
    user = User(name=check_portable_name(name, "user"), created_at=utc_now())
    session.add(user)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(sa.select(User).order_by(User.name)))


def delete_user(session: Session, name: str) -> None:
    """Delete a user and every token they hold (their jobs and runs stay)."""
    user = _user(session, name)
    session.execute(sa.delete(Token).where(Token.user == name))
    session.delete(user)
    session.commit()
    _principals.clear()


def _user(session: Session, name: str) -> User:
    user = session.get(User, name)
    if user is None:
        known = ", ".join(u.name for u in list_users(session)) or "none yet"
        raise NotFoundError(
            f"Unknown user {name!r} (known: {known}); create it with `flowyard user create`."
        )
    return user


def create_token(
    session: Session,
    user: str,
    role: Role,
    *,
    expires_at: datetime | None = None,
    description: str = "",
    create_user: bool = False,
) -> tuple[Token, str]:
    """A new token for ``user``; returns its row and the token itself, shown only this once.
    An ``expires_at`` without a zone is taken as UTC."""
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at is not None and expires_at <= utc_now():
        raise InvalidRequestError(
            "The token's expiry is in the past; give a future time or a duration such as 30d."
        )
    if session.get(User, user) is None:
        if not create_user:
            _user(session, user)
        _add_user(session, user)
    token = UserToken.new()
    row = Token(
        id=token.id,
        user=user,
        role=role.label,
        secret_sha256=token.sha256,
        description=description,
        created_at=utc_now(),
        expires_at=expires_at,
    )
    session.add(row)
    session.commit()
    return row, str(token)


def list_tokens(session: Session, user: str | None = None) -> list[Token]:
    query = sa.select(Token).order_by(Token.user, Token.created_at)
    if user is not None:
        query = query.where(Token.user == user)
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: str) -> Token:
    row = session.get(Token, token_id)
    if row is None:
        raise NotFoundError(
            f"Unknown token {token_id!r}; `flowyard token list` shows the ids of the tokens."
        )
    if row.revoked_at is None:
        row.revoked_at = utc_now()
        session.commit()
    _principals.clear()
    return row


def has_owner(session: Session) -> bool:
    """Whether some owner token still works."""
    owners = session.scalars(sa.select(Token).where(Token.role == Role.OWNER.label))
    return any(_valid(row) for row in owners)
