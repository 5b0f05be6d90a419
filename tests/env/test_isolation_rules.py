"""The pure rules of a process compute's isolation ``container``: which settings it takes, which
image names it accepts, what it mounts and the engine command it runs a job with."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowyard.compute.process import ProcessTarget
from flowyard.env import containers, isolation
from flowyard.errors import EnvBuildError, InvalidRequestError
from flowyard.runner.settings import ENV_ISOLATION_IMAGE, RunnerSettings
from flowyard.server.services.computes import _check_isolation

ENGINE = containers.Engine(
    "podman", "/usr/bin/podman", "4.3.1", ("--runtime", "runc"), ("--network", "host")
)


@pytest.mark.parametrize(
    ("kind", "isolation", "image", "error"),
    [
        ("process", "container", None, "--isolation container needs --isolation-image"),
        ("process", "container", "", "--isolation container needs --isolation-image"),
        ("process", None, "debian:12", "applies to --isolation container only, not sandbox"),
        ("process", "none", "debian:12", "applies to --isolation container only, not none"),
        ("process", "jail", None, "Unknown isolation 'jail'"),
        ("ray", "container", "debian:12", "applies to process computes only"),
        ("ray", None, "debian:12", "applies to process computes only"),
        ("process", "container", "--privileged", "is not an image name"),
        ("process", "container", "Debian:12", "is not an image name"),
        ("process", "container", 12, "is not an image name"),
    ],
)
def test_settings_a_compute_cannot_have_are_refused(
    kind: str, isolation: str | None, image: object, error: str
) -> None:
    with pytest.raises(InvalidRequestError, match=error):
        _check_isolation(kind, isolation, image)


@pytest.mark.parametrize("isolation", [None, "sandbox", "none"])
def test_the_other_isolations_need_no_image(isolation: str | None) -> None:
    _check_isolation("process", isolation, None)


@pytest.mark.parametrize(
    "image",
    [
        "debian",
        "debian:bookworm-slim",
        "docker.io/library/python:3.11-slim",
        "localhost/flowyard-test-base:0123abcd",
        "registry.example.com:5000/team/train:1.4",
        "ghcr.io/org/img@sha256:" + "a" * 64,
        "sha256:" + "b" * 64,
        "c" * 12,
    ],
)
def test_image_names_as_engines_take_them(image: str) -> None:
    containers.check_image_name(image, "--isolation-image")


@pytest.mark.parametrize(
    "image", ["-v", "--privileged", "img name", "img:", "/abs/path", "a//b", "img:tag:tag", ""]
)
def test_what_is_not_an_image_name_is_refused_in_one_sentence(image: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"\(--isolation-image\) is not an image name"):
        containers.check_image_name(image, "--isolation-image")


def test_only_what_a_registry_could_hold_is_left_for_the_runner_to_pull() -> None:
    assert containers.pullable("docker.io/library/debian:12")
    assert containers.pullable("debian:12")
    assert not containers.pullable("localhost/flowyard-test-base:1")
    assert not containers.pullable("sha256:" + "d" * 64)
    assert not containers.pullable("d" * 64)


def _venv(root: Path, home: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text(f"home = {home}\nversion = 3.11.7\n")
    return root / "bin"


def test_a_virtual_environment_needs_its_own_folder_and_its_interpreters(tmp_path: Path) -> None:
    python = tmp_path / "pythons" / "cpython-3.11"
    (python / "bin").mkdir(parents=True)
    bin_dir = _venv(tmp_path / "envs" / "abc", python / "bin")
    assert isolation.interpreter_prefixes(bin_dir) == [tmp_path / "envs" / "abc", python]


def test_a_linked_interpreter_is_mounted_where_it_really_is(tmp_path: Path) -> None:
    real = tmp_path / "real" / "3.11"
    (real / "bin").mkdir(parents=True)
    (tmp_path / "shim").symlink_to(real)
    bin_dir = _venv(tmp_path / "env", tmp_path / "shim" / "bin")
    assert isolation.interpreter_prefixes(bin_dir) == [tmp_path / "env", real]


def test_the_hosts_system_python_is_left_to_the_images_own(tmp_path: Path) -> None:
    """/usr is every image's own: mounting the host's would hide the image's tools and shell."""
    bin_dir = _venv(tmp_path / "env", Path("/usr/bin"))
    assert isolation.interpreter_prefixes(bin_dir) == [tmp_path / "env"]
    assert isolation.interpreter_prefixes(Path("/usr/local/bin")) == []


def test_the_job_folder_is_writable_and_everything_else_read_only(tmp_path: Path) -> None:
    project, env, python = tmp_path / "jobs/j1/project", tmp_path / "envs/e", tmp_path / "py"
    nested = python / "lib"
    for folder in (project, env, nested):
        folder.mkdir(parents=True)
    mounts = isolation.mounts(project, [env, python, nested, env, project])
    assert mounts == [f"{project}:{project}", f"{env}:{env}:ro", f"{python}:{python}:ro"]


def test_a_folder_an_engine_cannot_mount_is_an_error(tmp_path: Path) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    with pytest.raises(EnvBuildError, match=r"has a ':' in its path"):
        isolation.mounts(tmp_path, [odd])


def _values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_engine_command_of_an_isolated_job(tmp_path: Path) -> None:
    project, bin_dir = tmp_path / "project", tmp_path / "env" / "bin"
    mounts = [f"{project}:{project}", f"{bin_dir.parent}:{bin_dir.parent}:ro"]
    argv = isolation.run_argv(
        ENGINE,
        "flowyard-j1-1",
        "j1",
        "localhost/base:1",
        "python main.py --alpha 0.5",
        ["MLFLOW_RUN_ID", "FLOWYARD_TOKEN", "MLFLOW_RUN_ID"],
        project,
        mounts,
        bin_dir,
    )
    assert argv[:6] == ["/usr/bin/podman", "--runtime", "runc", "run", "--rm", "--name"]
    assert _values(argv, "--label") == [f"{containers.LABEL_JOB}=j1"]
    assert _values(argv, "--network") == ["host"]
    assert _values(argv, "--workdir") == [str(project.resolve())]
    assert _values(argv, "-v") == mounts
    # Variables by name only: their values (the job's token) never on a command line.
    assert _values(argv, "-e") == ["FLOWYARD_TOKEN", "MLFLOW_RUN_ID"]
    image_at = argv.index("localhost/base:1")
    assert "--interactive" in argv[:image_at]
    assert _values(argv[:image_at], "--cap-drop") == ["all"]
    assert _values(argv[:image_at], "--security-opt") == ["no-new-privileges"]
    assert argv[image_at + 1 : image_at + 3] == ["sh", "-c"]
    command = argv[-1]
    assert command.startswith(f'PATH={bin_dir}:"$PATH"; export PATH; ')
    assert command.endswith("python main.py --alpha 0.5")


def test_a_docker_env_jobs_command_is_unchanged_by_the_refactor(tmp_path: Path) -> None:
    from flowyard.jobspec import EnvironmentSpec, EnvManager

    spec = EnvironmentSpec(
        manager=EnvManager.DOCKER, image="img", volumes=("/d:/data:ro",), run_args=("--init",)
    )
    argv = containers.run_argv(ENGINE, "n", "j", "tag", "cmd", ["A"], spec, tmp_path / "out")
    assert _values(argv, "--workdir") == [containers.WORKDIR]
    outputs = f"{tmp_path / 'out'}:{containers.WORKDIR}/outputs"
    assert _values(argv, "-v") == [outputs, "/d:/data:ro"]
    assert argv[argv.index("tag") - 1] == "--init"


def test_the_runner_reads_the_image_its_compute_gives_it() -> None:
    assert RunnerSettings.from_env({}).isolation_image is None
    found = RunnerSettings.from_env({ENV_ISOLATION_IMAGE: " localhost/base:1 "})
    assert found.isolation_image == "localhost/base:1"


def test_compute_show_names_the_isolation_image() -> None:
    target = ProcessTarget("boxes", "container", isolation_image="localhost/base:1")
    assert target.isolation_detail.startswith("container: every job runs in a container of ")
    assert "localhost/base:1" in target.isolation_detail
