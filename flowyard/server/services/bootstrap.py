"""Tokens written straight into a workspace's database, with no server running: a new workspace's
first owner token, and the one whoever holds the database makes to get back in."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from flowyard.credentials import save_token
from flowyard.server.auth.tokens import Role
from flowyard.server.db.engine import make_engine, parse_db_url, schema_lock
from flowyard.server.db.models import Token
from flowyard.server.services import auth


def bootstrap_owner(db_url: str, workspace_url: str, *, always: bool = False) -> Path | None:
    """When no valid owner token exists (or ``always``, for someone who can open the database
    itself), create one (user ``owner``) and save it in this user's credentials file for
    ``workspace_url``; returns that file's path, or None if one existed."""
    made = create_token_in(
        db_url,
        "owner",
        Role.OWNER,
        description="created with the workspace",
        unless_an_owner_exists=not always,
    )
    return save_token(workspace_url, made[1]) if made else None


def create_token_in(
    db_url: str,
    user: str,
    role: Role,
    *,
    expires_at: datetime | None = None,
    description: str = "",
    unless_an_owner_exists: bool = False,
) -> tuple[Token, str] | None:
    """A token written straight into the database (the user made if new), with no server: what
    whoever holds the database may do. None when ``unless_an_owner_exists`` and one does."""
    engine = make_engine(parse_db_url(db_url))
    try:
        with schema_lock(engine), Session(engine, expire_on_commit=False) as session:
            if unless_an_owner_exists and auth.has_owner(session):
                return None
            return auth.create_token(
                session,
                user,
                role,
                expires_at=expires_at,
                description=description,
                create_user=True,
            )
    finally:
        engine.dispose()
