"""What went wrong when uv could not install an environment, in one sentence a person can act on.

uv explains a failure in a resolver's proof ("Because scikit-learn==0.19.1 has no wheels with a
matching Python ABI tag and you require ...") or in a build's output, often a page long. The job
log keeps all of it; the job's error says which requirement failed, why, and what to change.
"""

from __future__ import annotations

import re

from packaging.requirements import InvalidRequirement, Requirement

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REQ = r"(?P<req>[A-Za-z0-9][A-Za-z0-9._\-\[\],<>=!~*+]*)"
_PYTHON_USED = re.compile(r"Using (?:C?Python|PyPy) (?P<version>\d+\.\d+)")

# (pattern, why the requirement failed, what to change); {python} is the environment's Python,
# {spec} the Python a package needs, {only} what the index has, {loose} a looser requirement.
_CAUSES = (
    (
        re.compile(rf"Because {_REQ} was not found in the package registry"),
        "which is not in the package index",
        "check its name, or name the index that has it with `--extra-index-url URL` in the "
        "requirements",
    ),
    (
        re.compile(rf"Because there is no version of {_REQ} "),
        "of which the package index has no such version",
        "loosen the pin (e.g. `{loose}`)",
    ),
    (
        re.compile(
            rf"Because only (?P<only>\S+) is available and you require {_REQ}, we can conclude"
        ),
        "of which the package index has no such version (only {only} is available)",
        "change the requirement",
    ),
    (
        re.compile(
            r"the current Python version \([\d.]+\) does not satisfy Python(?P<spec>[^ ]+) and "
            rf"{_REQ} depends on Python"
        ),
        "which needs Python{spec}",
        "loosen the pin (e.g. `{loose}`), or ask for a Python it supports on a compute that has it",
    ),
    (
        re.compile(rf"{_REQ} has no wheels with a matching (?:Python ABI|Python version) tag"),
        "which has no build for Python {python} in the package index",
        "loosen the pin (e.g. `{loose}`), or ask for a Python it was built for on a compute "
        "that has it",
    ),
    (
        re.compile(rf"{_REQ} has no wheels with a matching platform tag"),
        "which has no build for this compute's platform in the package index",
        "loosen the pin (e.g. `{loose}`), or use a compute of a platform it was built for",
    ),
    (
        re.compile(rf"Failed to (?:download and )?build `{_REQ}`"),
        "which has no wheel for Python {python} in the package index, and building it from "
        "source failed",
        "loosen the pin (e.g. `{loose}`) so a release with a wheel can be picked, or ask for a "
        "Python it has wheels for on a compute that has it",
    ),
    (
        re.compile(rf"Failed to download `{_REQ}`"),
        "which could not be downloaded",
        "check that this compute reaches the package index, then run the job again",
    ),
)


def explain(output: str, source: str, python: str) -> str:
    """One sentence for uv's failed ``pip install``: which requirement, why, and the fix.

    Args:
        output: What uv printed.
        source: The environment file the requirements came from, as the user knows it.
        python: The Python the environment was built for, used when uv's output does not say.
    """
    text = " ".join(_ANSI.sub("", output).split())  # uv wraps long lines; patterns need one
    used = _PYTHON_USED.search(text)
    python = used["version"] if used else python
    for pattern, why, fix in _CAUSES:
        match = pattern.search(text)
        if not match:
            continue
        found = match.groupdict()
        req = found["req"].rstrip(",")
        parent = re.search(
            rf"(?P<parent>\S+) depends on {re.escape(_name(req))}\b", text, re.IGNORECASE
        )
        subject = f"{req} (which {parent['parent']} needs)" if parent else req
        fields = {
            "python": python,
            "spec": found.get("spec", ""),
            "only": found.get("only", ""),
            "loose": _looser(parent["parent"] if parent else req),
        }
        return (
            f"The environment from {source} cannot be built: it asks for {subject}, "
            f"{why.format(**fields)}; {fix.format(**fields)}."
        )
    return (
        f"uv could not install the packages of {source} ({first_error(text)}); the job log "
        "holds uv's whole output."
    )


def _name(req: str) -> str:
    try:
        return Requirement(req).name
    except InvalidRequirement:
        return re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0]


def _looser(req: str) -> str:
    """``name>=version`` for a pin, so a later release (with a build for this Python) can be
    picked; else the bare name."""
    try:
        parsed = Requirement(req)
    except InvalidRequirement:
        return _name(req)
    pins = [s.version for s in parsed.specifier if s.operator in ("==", "===")]
    if len(pins) == 1 and "*" not in pins[0]:
        return f"{parsed.name}>={pins[0]}"
    return parsed.name


def first_error(output: str) -> str:
    """uv's first error line and its causes, without its hints, cut short."""
    text = " ".join(_ANSI.sub("", output).split())
    start = text.find("error: ")
    found = text[start:] if start >= 0 else text[-300:]
    return found.split(" hint: ")[0][:300].rstrip(" .")
