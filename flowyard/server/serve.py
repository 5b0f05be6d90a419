"""Starting the server: check the port, bring the database up to date, then hand over to uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
from dataclasses import replace

from flowyard.errors import ServerStartError
from flowyard.server.db.engine import prepare_database
from flowyard.server.services.bootstrap import bootstrap_owner
from flowyard.server.settings import ENV_SETTINGS, ServerSettings


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket, as a TCP socket in name as well as in kind.

    Uvicorn's own pre-bound socket (used whenever it runs several workers) is created without
    ``proto=IPPROTO_TCP``, so asyncio does not set TCP_NODELAY on the connections it accepts, and
    Nagle's algorithm with delayed ACKs adds ~40 ms to every small request. Asyncio does set it
    when the socket says it is TCP.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServerStartError(
                f"Port {port} on {host} is already in use; stop whatever serves there or pick "
                "another port with --port."
            ) from e
        raise ServerStartError(f"Cannot listen on {host}:{port} ({e.strerror}).") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(settings: ServerSettings) -> None:
    """Refuse to serve a workspace without auth where others can reach it, unless forced."""
    if not settings.auth and not settings.insecure and not is_loopback(settings.host):
        raise ServerStartError(
            f"Refusing to serve without auth on {settings.host}, which is not loopback: anyone "
            "who reaches it could read and change everything; drop --no-auth, or add --insecure "
            "if a proxy in front does the authentication."
        )


def serve(settings: ServerSettings, *, log_level: str = "info") -> None:
    """Serve until SIGINT or SIGTERM, then finish the requests in flight and stop."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    check_exposure(settings)
    sock = bind_socket(settings.host, settings.port)
    try:
        db_url, name = prepare_database(settings.db_url, settings.workspace_name)
        created = bootstrap_owner(db_url, settings.url) if settings.auth else None
    except BaseException:
        sock.close()
        raise
    if created is not None:
        print(
            f"No owner token existed: created one for user 'owner', saved in {created} for "
            f"{settings.url}",
            file=sys.stderr,
        )
    settings = replace(settings, db_url=db_url, workspace_name=name)
    os.environ[ENV_SETTINGS] = settings.to_env()
    config = uvicorn.Config(
        "flowyard.server.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
    # The one line a user needs, before uvicorn's own log lines.
    print(f"Flowyard workspace {name!r} at {settings.url}", file=sys.stderr, flush=True)
    if settings.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
