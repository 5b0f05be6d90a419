"""The rule for names people give workspaces and users: words that are safe as a folder's name,
in a command line and in a URL."""

from __future__ import annotations

import re

from flowyard.errors import ConfigError

# POSIX's portable filename characters, not starting with '.' or '-' (a hidden file, an option).
_PORTABLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def check_portable_name(name: str, kind: str) -> str:
    """``name`` if it may name a ``kind`` (a workspace, a user); raises otherwise."""
    if not _PORTABLE.match(name):
        raise ConfigError(
            f"The {kind} name {name!r} is not valid; use up to 63 letters, digits, '-', '_' "
            "or '.', starting with a letter or digit."
        )
    return name
