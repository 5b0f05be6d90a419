"""Settings are read from the environment once, at the edge, and then passed as objects."""

from __future__ import annotations

import socket

import pytest

from flowyard import defaults
from flowyard.errors import ConfigError
from flowyard.runner.settings import RunnerSettings
from flowyard.server.settings import ServerSettings


def test_the_dispatcher_tunables_default_and_come_from_their_variables() -> None:
    assert ServerSettings.tunables({}) == {
        "dispatch_interval_s": defaults.DISPATCH_INTERVAL_S,
        "reconcile_interval_s": defaults.RECONCILE_INTERVAL_S,
        "heartbeat_timeout_s": defaults.HEARTBEAT_TIMEOUT_S,
        "health_interval_s": defaults.HEALTH_INTERVAL_S,
        "repair_after_s": defaults.REPAIR_AFTER_S,
        "gc_interval_s": defaults.GC_INTERVAL_S,
        "gc_grace_s": defaults.GC_GRACE_S,
        "sweep_lease_s": defaults.SWEEP_LEASE_S,
    }
    found = ServerSettings.tunables(
        {
            "FLOWYARD_GC_GRACE_S": "30",
            "FLOWYARD_HEARTBEAT_TIMEOUT_S": "4",
            "FLOWYARD_RECONCILE_INTERVAL_S": " 1 ",
            "FLOWYARD_DISPATCH_INTERVAL_S": "0.2",
            "FLOWYARD_HEALTH_INTERVAL_S": "",
            "FLOWYARD_REPAIR_AFTER_S": "2",
            "FLOWYARD_SWEEP_LEASE_S": "2",
        }
    )
    assert found["sweep_lease_s"] == 2.0
    assert found["heartbeat_timeout_s"] == 4.0 and found["reconcile_interval_s"] == 1.0
    assert found["dispatch_interval_s"] == 0.2
    assert found["health_interval_s"] == defaults.HEALTH_INTERVAL_S
    assert found["repair_after_s"] == 2.0
    assert found["gc_grace_s"] == 30.0


def test_the_tunables_reach_the_server_workers_with_the_other_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tunables = ServerSettings.tunables({"FLOWYARD_HEARTBEAT_TIMEOUT_S": "3600"})
    settings = ServerSettings("w", "sqlite:///x.db", "/tmp/a", **tunables)
    monkeypatch.setenv("FLOWYARD_SERVER_SETTINGS", settings.to_env())
    monkeypatch.setenv("FLOWYARD_HEARTBEAT_TIMEOUT_S", "1")  # read once, by the command
    assert ServerSettings.from_env() == settings
    assert ServerSettings.from_env().heartbeat_timeout_s == 3600.0


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_value_names_its_variable_and_the_fix(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"\$FLOWYARD_DISPATCH_INTERVAL_S is .*positive number"):
        ServerSettings.tunables({"FLOWYARD_DISPATCH_INTERVAL_S": raw})
    with pytest.raises(ConfigError, match=r"\$FLOWYARD_KILL_GRACE_S is"):
        RunnerSettings.from_env({"FLOWYARD_KILL_GRACE_S": raw})


def test_the_runner_settings_default_and_come_from_their_variables() -> None:
    assert RunnerSettings.from_env({}) == RunnerSettings()
    assert RunnerSettings() == RunnerSettings(
        defaults.RUNNER_HEARTBEAT_S, defaults.RUNNER_KILL_GRACE_S, defaults.RUNNER_RETRY_FOR_S
    )
    found = RunnerSettings.from_env(
        {"FLOWYARD_HEARTBEAT_S": "2", "FLOWYARD_KILL_GRACE_S": "3", "FLOWYARD_RETRY_FOR_S": "60"}
    )
    assert found == RunnerSettings(heartbeat_s=2.0, kill_grace_s=3.0, retry_for_s=60.0)


def test_the_runners_blob_cache_bound_comes_from_its_variable() -> None:
    assert RunnerSettings().blob_cache_mb == defaults.BLOB_CACHE_MB
    assert RunnerSettings.from_env({"FLOWYARD_BLOB_CACHE_MB": "0"}).blob_cache_mb == 0.0
    assert RunnerSettings.from_env({"FLOWYARD_BLOB_CACHE_MB": "250.5"}).blob_cache_mb == 250.5
    for raw in ("lots", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match=r"\$FLOWYARD_BLOB_CACHE_MB is .*number of MB"):
            RunnerSettings.from_env({"FLOWYARD_BLOB_CACHE_MB": raw})


def test_a_replica_records_a_url_other_hosts_reach() -> None:
    def at(host: str, **given: str) -> ServerSettings:
        return ServerSettings("w", "sqlite:///x.db", "/tmp/a", host=host, port=5123, **given)

    assert at("127.0.0.1").reachable_url == "http://127.0.0.1:5123"
    assert at("::1").reachable_url == "http://[::1]:5123"
    # Listening on every address, it is reached by the host's name, never by 0.0.0.0.
    assert at("0.0.0.0").reachable_url == f"http://{socket.getfqdn()}:5123"
    assert at("::").reachable_url == f"http://{socket.getfqdn()}:5123"
    given = at("0.0.0.0", replica_url="http://node-7.internal:5123/")
    assert given.reachable_url == "http://node-7.internal:5123"
    # Runners are given the advertised URL first, and the server's own without one.
    assert at("0.0.0.0", advertised_url="http://lb:80").runners_url == "http://lb:80"
    assert at("127.0.0.1").runners_url == "http://127.0.0.1:5123"
