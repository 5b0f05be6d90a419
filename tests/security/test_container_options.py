"""A docker_env job on a shared compute mounts only the folders the compute allows and passes the
engine only harmless options, however its submitter spells them (the engine's own command line
is the attack surface: a mount of / or --privileged is the host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyard.env.containers import ENV_VOLUMES, check_shared, resolve_volumes, run_args
from flowyard.errors import InvalidRequestError
from flowyard.jobspec import EnvironmentSpec, EnvManager

ALLOWED = ("/srv/data",)


def _spec(volumes: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> EnvironmentSpec:
    return EnvironmentSpec(manager=EnvManager.DOCKER, image="img", volumes=volumes, run_args=args)


@pytest.mark.parametrize(
    "volume",
    [
        "/srv/data/../../etc:/x",  # out of the folder by ..
        "/srv/database:/x",  # a sibling sharing the folder's prefix
        "/:/host",
        "named-volume:/x",  # an engine volume other jobs may share
        "relative/path:/x",
    ],
)
def test_a_volume_outside_the_allowed_folders_is_refused(volume: str) -> None:
    with pytest.raises(InvalidRequestError, match="which compute shared does not allow"):
        check_shared(_spec(volumes=(volume,)), "shared", ALLOWED)


@pytest.mark.parametrize(
    "docker_args",
    [
        {"privileged": True},
        {"cap-add": "SYS_ADMIN"},
        {"network": "container:another-job"},
        {"pid": "host"},
        {"device": "/dev/sda"},
        {"security-opt": "seccomp=unconfined"},
        {"env-file": "/etc/shadow"},
        {"mount": "type=bind,src=/,dst=/host"},
    ],
)
def test_an_engine_option_beyond_limits_is_refused(docker_args: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError, match="is not allowed on compute shared"):
        check_shared(_spec(args=run_args(docker_args)), "shared", ALLOWED)


@pytest.mark.parametrize(
    "args",
    [
        ("--volume=/etc:/x",),  # the value in the flag
        ("-v", "/etc:/x"),
        ("--init", "-v", "/etc:/x"),  # behind a flag that takes no value
    ],
)
def test_a_mount_in_docker_args_is_checked_like_a_volume(args: tuple[str, ...]) -> None:
    with pytest.raises(InvalidRequestError, match="mounts /etc"):
        check_shared(_spec(args=args), "shared", ALLOWED)


def test_allowed_volumes_and_limits_pass() -> None:
    spec = _spec(
        volumes=("/srv/data:/data:ro", "/srv/data/sub/:/sub"),
        args=run_args({"memory": "1g", "cpus": "2", "v": "/srv/data/x:/x", "init": True}),
    )
    check_shared(spec, "shared", ALLOWED)


def test_a_symlink_in_an_allowed_folder_mounts_nothing_outside_it(tmp_path: Path) -> None:
    allowed = tmp_path / "data"
    allowed.mkdir()
    (allowed / "escape").symlink_to("/etc")  # left there by an earlier job
    (allowed / "inside").mkdir()
    environ = {ENV_VOLUMES: str(allowed)}
    spec = _spec(volumes=(f"{allowed}/escape:/x",))
    with pytest.raises(InvalidRequestError, match="mounts /etc"):
        resolve_volumes(spec, environ)
    via_args = _spec(args=("--volume", f"{allowed}/escape:/x"))
    with pytest.raises(InvalidRequestError, match="mounts /etc"):
        resolve_volumes(via_args, environ)
    fine = resolve_volumes(_spec(volumes=(f"{allowed}/inside/../inside:/x:ro",)), environ)
    assert fine.volumes == (f"{allowed.resolve()}/inside:/x:ro",)
