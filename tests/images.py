"""A base image for the container tests, built here since no registry is reachable: a minimal
Debian root file system (debootstrap, from the Debian mirror) with python3, then MLflow
(mlflow-skinny at the workspace's version, with numpy and pandas for its models) installed into
it as any docker_env image must have it.

Each of the two layers is cached in the engine's own storage under a tag keyed by its recipe:
the Debian one is built once per machine (a minute or more), the packages one when MLflow's
version changes (seconds, from uv's cache); after that both are found in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest
from filelock import FileLock

from flowyard.env import containers
from flowyard.env.builder import uv_bin
from flowyard.errors import EnvBuildError

MIRROR = "http://deb.debian.org/debian"
# How each layer is made; a change here makes a new image.
DEBIAN = "debootstrap --variant=minbase --include=python3,procps; python -> python3"
PACKAGES = (f"mlflow-skinny=={mlflow.__version__}", "numpy", "pandas")
# Compiled ahead, as pip installs do: a container's writes go with it, so bytecode Python wrote
# at run time would be compiled again by every job. Compiled here by this Python (the image's
# minor version), unchecked: the copy into the image need not keep the sources' times.
COMPILE = ("-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash")


def engine_or_skip() -> containers.Engine:
    try:
        return containers.engine()
    except EnvBuildError as e:
        pytest.skip(f"no container engine here ({e.message}); `make containers` installs Podman")


def _tag(name: str, identity: str) -> str:
    return f"localhost/flowyard-test-{name}:{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _exists(engine: containers.Engine, tag: str) -> bool:
    return engine.call("image", "inspect", tag).returncode == 0


def _drop_older(engine: containers.Engine, tag: str) -> None:
    """Remove the images of ``tag``'s repository made by an older recipe."""
    repo = tag.rsplit(":", 1)[0]
    listed = engine.call("images", "--format", "{{.Repository}}:{{.Tag}}", repo)
    older = [t for t in listed.stdout.split() if t.startswith(f"{repo}:") and t != tag]
    if older:
        engine.call("rmi", *older)


def _suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"') or "bookworm"
    return "bookworm"


def _debian(engine: containers.Engine) -> str:
    suite = _suite()
    tag = _tag("debian", f"{DEBIAN}|{suite}|{platform.machine()}")
    if _exists(engine, tag):
        return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        pytest.skip("debootstrap is not installed; `make containers` installs it")
    with tempfile.TemporaryDirectory(prefix="flowyard-test-rootfs-") as folder:
        root = Path(folder) / "root"
        made = subprocess.run(
            [
                debootstrap,
                "--variant=minbase",
                "--include=python3,procps",
                suite,
                str(root),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
        (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(
            ["tar", "-C", str(root), "--exclude=./proc/*", "--exclude=./sys/*", "-c", "."],
            stdout=subprocess.PIPE,
        )
        imported = engine.call_with_input("import", "-", tag, stdin=tar.stdout)
        tar.wait()
        assert imported.returncode == 0, imported.stderr
    _drop_older(engine, tag)
    return tag


def base_image(engine: containers.Engine) -> str:
    """The tag of the test base image, built first if this machine lacks it (by one test
    process at a time: `make test` runs two)."""
    lock = Path(tempfile.gettempdir()) / f"flowyard-test-images-{os.getuid()}.lock"
    with FileLock(lock, timeout=1200):
        return _base_image(engine)


def _base_image(engine: containers.Engine) -> str:
    debian = _debian(engine)
    tag = _tag("base", f"{debian}|{'|'.join(PACKAGES + COMPILE)}")
    if _exists(engine, tag):
        return tag
    python = engine.call(
        "run",
        "--rm",
        *engine.run_args,
        debian,
        "python3",
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
    )
    version = python.stdout.strip()
    assert python.returncode == 0 and version, python.stderr
    with tempfile.TemporaryDirectory(prefix="flowyard-test-image-") as folder:
        site = Path(folder) / "site"
        installed = subprocess.run(
            [
                uv_bin(),
                "pip",
                "install",
                "--quiet",
                "--target",
                str(site),
                "--python-version",
                version,
                "--python-platform",
                f"{platform.machine()}-manylinux_2_28",
                *PACKAGES,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr
        if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
            subprocess.run([sys.executable, *COMPILE, str(site)], capture_output=True, check=False)
        (Path(folder) / "Containerfile").write_text(
            f"FROM {debian}\nCOPY site/ /usr/local/lib/python{version}/dist-packages/\n"
        )
        built = engine.call("build", "--quiet", "-t", tag, folder, timeout=600)
        assert built.returncode == 0, built.stderr
    _drop_older(engine, tag)
    return tag


def engine_client_parent(name: str) -> int:
    """The pid of the process that started the engine client running container ``name``: the
    job's runner."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text() if name.encode() in argv else ""
        except OSError:
            continue
        if b"run" in argv and status:
            return int(next(li for li in status.splitlines() if li.startswith("PPid:")).split()[1])
    raise AssertionError(f"no engine client runs {name}")
