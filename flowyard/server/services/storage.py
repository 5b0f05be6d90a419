"""How full the disks are that the workspace writes to: its database's (SQLite) and its artifact
store's (a local folder). Health reports them, and warns before one fills up."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

from flowyard import disks
from flowyard.server.settings import ServerSettings


def watched(settings: ServerSettings) -> dict[str, str]:
    """The local paths whose disks matter, by what they hold."""
    found: dict[str, str] = {}
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        found["database"] = str(url.database)
    folder = disks.local_folder(settings.artifacts_destination)
    if folder is not None:
        found["artifact store"] = str(folder)
    return found


def report(settings: ServerSettings) -> tuple[dict[str, Any], list[str]]:
    """Each watched disk's size, free bytes and fullness, and a warning for each fuller than
    ``disk_warn_percent``."""
    shown: dict[str, Any] = {}
    warnings: list[str] = []
    for what, path in watched(settings).items():
        usage = disks.usage(path)
        if usage is None:
            continue
        shown[what] = {
            "path": path,
            "total_bytes": usage.total,
            "free_bytes": usage.free,
            "used_percent": round(usage.used_percent, 1),
        }
        if usage.used_percent > settings.disk_warn_percent:
            warnings.append(
                f"The disk of the {what} ({path}) is {usage.used_percent:.0f}% full, "
                f"{usage.free:,} bytes free; free space there, or run `flowyard gc` and delete "
                "old jobs (`flowyard job delete --older-than DAYS`)."
            )
    return shown, warnings
