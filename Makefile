# Two commands do all the set-up on a fresh machine:
#   make demo   a workspace on its embedded defaults, with the example trained on it
#   make test   lint, type checks and the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Ray listens on every interface of the machine; its tests run in a network namespace of their
# own that has only loopback (root: `unshare --net`; anyone else: `unshare -rn`).
NETNS := $(if $(filter 0,$(shell id -u)),unshare --net --fork,unshare -rn --fork)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo )

.PHONY: demo test test-ray lint bench studio-browser bubblewrap tmux containers

# --compile-bytecode: runners start many short-lived Pythons, which would otherwise compile
# MLflow from source each time when PYTHONDONTWRITEBYTECODE is set.
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]'
	touch $@

demo: $(BIN)/.installed bubblewrap
	$(BIN)/python examples/demo.py

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

# Two workers, each given whole modules (their module-scoped workspaces are not started twice):
# most of a test's time is a job's processes starting and waiting, so two share the 2 cores well.
test: lint studio-browser bubblewrap tmux containers
	$(BIN)/python -m pytest -m "not ray" -n 2 --dist loadfile
	$(MAKE) test-ray

# The studio's browser tests drive Debian's chromium (Playwright's own download is not used).
studio-browser:
	command -v chromium >/dev/null || ($(SUDO)apt-get update && $(SUDO)apt-get install -y --no-install-recommends chromium)

# A process compute runs each job in a bubblewrap sandbox (docs/computes.md, "Isolation").
bubblewrap:
	command -v bwrap >/dev/null || ($(SUDO)apt-get update && $(SUDO)apt-get install -y --no-install-recommends bubblewrap)

# The display's tests drive a real terminal: tmux, on a socket of their own.
tmux:
	command -v tmux >/dev/null || ($(SUDO)apt-get update && $(SUDO)apt-get install -y --no-install-recommends tmux)

# docker_env jobs run in containers: Podman with runc (crun refuses hybrid cgroups), and
# debootstrap, which makes the tests' base image from the Debian mirror (no registry is needed).
containers:
	command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null || ($(SUDO)apt-get update && $(SUDO)apt-get install -y --no-install-recommends podman runc debootstrap)

test-ray: $(BIN)/.installed
	$(NETNS) bash -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec $(BIN)/python -m pytest -m ray'

bench: $(BIN)/.installed
	$(BIN)/python bench/tracking.py
	$(BIN)/python bench/submit.py
