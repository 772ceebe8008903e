"""docker-compose.yml is checked by parsing it: no Docker engine runs here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from domain.bulkheads import Bulkhead
from settings import Settings
from worker import parse_bulkheads

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-orders", "worker-inventory", "worker-payments", "worker-shipping")
APP_SERVICES = ("api", *WORKERS, "migrate", "relay", "consumers", "choreography")
# The services that connect to NATS, and the user each logs in as.
NATS_CLIENTS = {"relay": "relay", "consumers": "consumers", "choreography": "choreography"}
NATS_CONFIG = ROOT / "deploy" / "nats" / "nats-server.conf"
# `${VAR:?message}`: compose refuses to start without the operator's value.
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def settings_env_names() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"SAGA_{name.upper()}")
        alias = field.validation_alias
        if alias is not None and hasattr(alias, "choices"):
            names.update(str(choice) for choice in alias.choices)
    return names


def test_compose_has_the_whole_stack(compose):
    assert {
        "postgres",
        "temporal",
        "temporal-ui",
        "nats",
        "payment-provider",
        *APP_SERVICES,
    } <= set(compose["services"])


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_app_variable_is_a_setting(compose, service):
    env = compose["services"][service]["environment"]
    unknown = set(env) - settings_env_names()
    assert not unknown, f"{service} sets variables no setting reads: {sorted(unknown)}"
    assert {"TEMPORAL_ADDRESS", "DATABASE_URL", "NATS_URL"} <= set(env)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_settings_parse_from_the_compose_environment(compose, service, monkeypatch):
    for key, value in compose["services"][service]["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.temporal_target == "temporal:7233"
    assert settings.database_target.startswith("postgresql+asyncpg://saga:saga@postgres:5432/")


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_commands_name_real_entrypoints(compose, service):
    command = compose["services"][service]["command"]
    if command[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None
    elif command[0] == "python":
        assert (ROOT / command[1]).is_file()
        if command[1] == "worker.py":
            assert parse_bulkheads(command[2:][1::2])
    else:
        from stack.cli import build_parser

        assert command[0] == "sagactl"
        build_parser().parse_args(command[1:])


def test_each_bulkhead_has_one_worker_service_that_reaches_the_provider(compose):
    served = []
    for name in WORKERS:
        command = compose["services"][name]["command"]
        assert command[:3] == ["python", "worker.py", "--bulkhead"]
        served += parse_bulkheads([command[3]])
    assert sorted(served) == sorted(Bulkhead)
    env = compose["services"]["worker-payments"]["environment"]
    assert env["SAGA_PAYMENT_PROVIDER_URL"] == "http://payment-provider:8100"


def test_the_payment_provider_simulator_listens_where_the_workers_look(compose, monkeypatch):
    service = compose["services"]["payment-provider"]
    assert service["command"] == ["python", "-m", "payment_provider"]
    for key, value in service["environment"].items():
        assert key in settings_env_names()
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert (settings.payment_provider_host, settings.payment_provider_port) == ("0.0.0.0", 8100)


def test_the_simulators_admin_api_listens_on_loopback_only(compose, monkeypatch):
    from payment_provider.listeners import Listeners, is_loopback

    service = compose["services"]["payment-provider"]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    listeners = Listeners.from_settings(Settings())
    assert listeners.admin_port is not None and listeners.admin_port != listeners.port
    assert is_loopback(listeners.admin_host)
    assert str(listeners.admin_port) not in str(service.get("ports", []))
    assert "/admin" not in " ".join(service["healthcheck"]["test"])


def nats_users() -> dict[str, str]:
    """User -> the environment variable holding its password, as the NATS config says."""
    text = NATS_CONFIG.read_text()
    return dict(re.findall(r"\{\s*user:\s*([\w-]+),\s*password:\s*\$(\w+)", text))


def test_nats_runs_with_the_auth_config_and_the_operators_passwords(compose):
    nats = compose["services"]["nats"]
    command = nats["command"]
    config = command[command.index("-c") + 1]
    assert f"./deploy/nats/nats-server.conf:{config}:ro" in nats["volumes"]
    users = nats_users()
    assert sorted(users) == sorted(NATS_CLIENTS.values())
    for variable in users.values():
        match = REQUIRED.match(nats["environment"][variable])
        assert match is not None and match.group(1) == variable, variable
    assert "no_auth_user" not in NATS_CONFIG.read_text()


@pytest.mark.parametrize("service", sorted(NATS_CLIENTS))
def test_each_nats_client_logs_in_as_its_own_user(compose, service, monkeypatch):
    env = compose["services"][service]["environment"]
    user = env["SAGA_NATS_USER"]
    assert user == NATS_CLIENTS[service]
    match = REQUIRED.match(env["SAGA_NATS_PASSWORD"])
    assert match is not None, "a password from the operator, never a default"
    assert match.group(1) == nats_users()[user]
    assert "@" not in env.get("NATS_URL", "")  # no credentials in a URL that gets logged
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.nats_user == user and settings.nats_password is not None


def test_only_nats_clients_have_nats_credentials(compose):
    for name in set(APP_SERVICES) - set(NATS_CLIENTS):
        env = compose["services"][name]["environment"]
        assert "SAGA_NATS_PASSWORD" not in env, name


def test_postgres_allows_prepared_transactions(compose):
    command = " ".join(compose["services"]["postgres"]["command"])
    assert "max_prepared_transactions=" in command
    assert "max_prepared_transactions=0" not in command


def test_postgres_allows_logical_decoding_with_bounded_slots(compose):
    command = compose["services"]["postgres"]["command"]
    assert "wal_level=logical" in command
    assert any(arg.startswith("max_slot_wal_keep_size=") for arg in command)


def test_the_image_copies_every_package_the_project_installs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    modules = set(project["tool"]["setuptools"]["py-modules"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = {
        word.rstrip("/").removeprefix("./")
        for line in dockerfile.splitlines()
        if line.startswith("COPY")
        for word in line.split()[1:-1]
    }

    assert packages <= copied
    assert {f"{m}.py" for m in modules} <= copied


def test_every_long_running_service_has_a_health_check_on_a_port_it_serves(compose):
    ports = {
        "relay": "9101",
        **{name: "9102" for name in WORKERS},
        "consumers": "9103",
        "choreography": "9104",
        "api": "8000",
    }
    for name, service in compose["services"].items():
        if name in ("migrate", "temporal-ui"):
            continue  # one-shot; the UI is only looked at
        test = " ".join(service["healthcheck"]["test"])
        if name in ports:
            assert f"localhost:{ports[name]}/" in test, name
    # Reachable from Prometheus in another container.
    for name, variable in [
        ("relay", "SAGA_RELAY_METRICS_HOST"),
        ("consumers", "SAGA_CONSUMERS_METRICS_HOST"),
        ("choreography", "SAGA_CHOREOGRAPHY_METRICS_HOST"),
    ]:
        assert compose["services"][name]["environment"][variable] == "0.0.0.0", name
    for name in WORKERS:
        assert compose["services"][name]["environment"]["SAGA_WORKER_METRICS_HOST"] == "0.0.0.0"
