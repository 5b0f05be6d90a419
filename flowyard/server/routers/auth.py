"""Who am I, and (owners only, as the auth middleware enforces) users and tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request

from flowyard.schemas import (
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenOut,
    UserCreate,
    UserList,
    UserOut,
    Whoami,
)
from flowyard.server.auth.tokens import Role
from flowyard.server.db.models import Token
from flowyard.server.middleware.auth import principal_of
from flowyard.server.services import auth
from flowyard.server.state import DbSession, State

router = APIRouter(tags=["access"])


def token_out(row: Token) -> TokenOut:
    return TokenOut.model_validate({c: getattr(row, c) for c in TokenOut.model_fields})


@router.get("/whoami")
def whoami(request: Request, state: State) -> Whoami:
    principal = principal_of(request)
    return Whoami(
        user=principal.user,
        role=principal.role.label,
        job=principal.job.id if principal.job else None,
        auth=state.settings.auth,
    )


@router.get("/users")
def list_users(session: DbSession) -> UserList:
    return UserList(
        users=[UserOut(name=u.name, created_at=u.created_at) for u in auth.list_users(session)]
    )


@router.post("/users", status_code=201)
def create_user(body: UserCreate, session: DbSession) -> UserOut:
    user = auth.create_user(session, body.name)
    return UserOut(name=user.name, created_at=user.created_at)


@router.delete("/users/{name}")
def delete_user(name: str, session: DbSession) -> UserList:
    auth.delete_user(session, name)
    return list_users(session)


@router.get("/tokens")
def list_tokens(session: DbSession, user: str | None = None) -> TokenList:
    return TokenList(tokens=[token_out(t) for t in auth.list_tokens(session, user)])


@router.post("/tokens", status_code=201)
def create_token(body: TokenCreate, request: Request, session: DbSession) -> TokenCreated:
    row, token = auth.create_token(
        session,
        body.user or principal_of(request).user,
        Role.parse(body.role),
        expires_at=body.expires_at,
        description=body.description,
    )
    return TokenCreated(**token_out(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: str, session: DbSession) -> TokenOut:
    return token_out(auth.revoke_token(session, token_id))
