"""docker-compose.yml is checked by parsing it: no Docker engine runs here."""

from __future__ import annotations

import base64
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from choreography.service import parse_services
from domain.bulkheads import Bulkhead
from settings import Settings
from startup import checked_settings, is_secret
from wiring.root import parse_bulkheads

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("worker-orders", "worker-inventory", "worker-payments", "worker-shipping")
CHOREOGRAPHY = tuple(f"choreography-{b.value}" for b in Bulkhead)
APP_SERVICES = ("api", *WORKERS, "migrate", "relay", "consumers", *CHOREOGRAPHY)
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "init.sh"
# Compose's `${NAME:?message}`: the operator must set NAME; there is no default.
REQUIRED_VARIABLE = re.compile(r"\$\{(\w+):\?[^}]*\}")
REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")
# The services that connect to NATS, and the user each logs in as.
NATS_CLIENTS = {
    "relay": "relay",
    "consumers": "consumers",
    **{name: "choreography" for name in CHOREOGRAPHY},
}
NATS_CONFIG = ROOT / "deploy" / "nats" / "nats-server.conf"


# What an operator puts in `.env`; the file itself holds none of it.
OPERATOR_ENV = {
    "SAGA_PAYLOAD_CODEC_KEY": base64.b64encode(bytes(range(32))).decode(),
    "SAGA_API_ADMIN_KEYS": '["admin-key"]',
    "SAGA_API_ORDER_KEYS": '["order-key"]',
    "SAGA_CARD_TOKEN_KEY": base64.b64encode(bytes(range(32, 64))).decode(),
}
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}
REFERENCE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class Refused(Exception):
    """What `docker compose` says when a required variable is unset."""


def interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's variable substitution, as `docker compose config` applies it."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        present = env.get(name)
        empty = present is None or (present == "" and op is not None and op.startswith(":"))
        if not empty:
            return str(present)
        if op is not None and op.endswith("?"):
            raise Refused(f"{name}: {arg}")
        return arg if op is not None else ""

    return REFERENCE.sub(one, str(value)).replace("$$", "$")


def service_env(
    compose: dict[str, Any], service: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    raw = compose["services"][service].get("environment", {})
    return {k: interpolate(v, operator_env() if env is None else env) for k, v in raw.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def our_services(compose: dict[str, Any]) -> list[str]:
    """Every service running this project's image (and so its Settings)."""
    return [name for name, service in compose["services"].items() if "build" in service]


def required_variables() -> list[str]:
    return sorted(set(REQUIRED_VARIABLE.findall((ROOT / "docker-compose.yml").read_text())))


def operator_env() -> dict[str, str]:
    """A value for every variable the compose file requires: keys that parse, passwords."""
    return {name: f"pw-{name.lower()}" for name in required_variables()} | OPERATOR_ENV


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
        *NATS_NODES,
        "payment-provider",
        "prometheus",
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
    for key, value in service_env(compose, service).items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.temporal_target == "temporal:7233"
    url = make_url(settings.database_target)
    assert (url.drivername, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "postgres",
        5432,
        "saga",
    )


@pytest.mark.parametrize("service", APP_SERVICES)
def test_app_commands_name_real_entrypoints(compose, service):
    command = compose["services"][service]["command"]
    if command[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(f"{command[2]}.__main__") is not None
        if command[2] == "choreography":
            assert parse_services(command[4]) == [service.removeprefix("choreography-")]
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
    for key, value in service_env(compose, "payment-provider").items():
        assert key in settings_env_names()
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.payment_provider_host, settings.payment_provider_port) == ("0.0.0.0", 8100)


def test_the_simulators_admin_api_listens_on_loopback_only(compose, monkeypatch):
    from payment_provider.__main__ import listeners_of
    from payment_provider.listeners import is_loopback

    service = compose["services"]["payment-provider"]
    for key, value in service_env(compose, "payment-provider").items():
        monkeypatch.setenv(key, value)
    listeners = listeners_of(Settings())
    assert listeners.admin_port is not None and listeners.admin_port != listeners.port
    assert is_loopback(listeners.admin_host)
    assert str(listeners.admin_port) not in str(service.get("ports", []))
    assert "/admin" not in " ".join(service["healthcheck"]["test"])


def nats_users() -> dict[str, str]:
    """User -> the environment variable holding its password, as the NATS config says."""
    text = NATS_CONFIG.read_text()
    return dict(re.findall(r"\{\s*user:\s*([\w-]+),\s*password:\s*\$(\w+)", text))


NATS_NODES = ("nats-1", "nats-2", "nats-3")


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_runs_with_the_auth_config_and_the_operators_passwords(compose, node):
    nats = compose["services"][node]
    command = nats["command"]
    config = command[command.index("-c") + 1]
    assert f"./deploy/nats/nats-server.conf:{config}:ro" in nats["volumes"]
    users = nats_users()
    assert sorted(users) == sorted(set(NATS_CLIENTS.values()))
    for variable in users.values():
        match = REQUIRED.match(nats["environment"][variable])
        assert match is not None and match.group(1) == variable, variable
    assert "no_auth_user" not in NATS_CONFIG.read_text()


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_jetstream_is_a_three_node_cluster_the_clients_know_whole(compose, monkeypatch):
    nodes = [compose["services"][node] for node in NATS_NODES]
    commands = [node["command"] for node in nodes]
    assert [_option(c, "--server_name") for c in commands] == list(NATS_NODES)
    assert {_option(c, "--cluster_name") for c in commands} == {"saga"}
    routes = {f"nats://{node}:6222" for node in NATS_NODES}
    assert all(set(_option(c, "--routes").split(",")) == routes for c in commands)
    stores = {next(v for v in node["volumes"] if v.endswith(":/data")) for node in nodes}
    assert len(stores) == len(NATS_NODES), "each node its own store"
    for key, value in service_env(compose, "relay").items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.nats_stream_replicas == 3
    assert settings.nats().servers == [f"nats://{node}:4222" for node in NATS_NODES]
    for client in NATS_CLIENTS:
        depends = compose["services"][client]["depends_on"]
        assert all(depends[node]["condition"] == "service_healthy" for node in NATS_NODES)


def test_more_than_one_relay_and_workflow_worker_run(compose):
    assert compose["services"]["relay"]["deploy"]["replicas"] >= 2
    assert compose["services"]["worker-orders"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("service", sorted(NATS_CLIENTS))
def test_each_nats_client_logs_in_as_its_own_user(compose, service, monkeypatch):
    env = compose["services"][service]["environment"]
    user = env["SAGA_NATS_USER"]
    assert user == NATS_CLIENTS[service]
    match = REQUIRED.match(env["SAGA_NATS_PASSWORD"])
    assert match is not None, "a password from the operator, never a default"
    assert match.group(1) == nats_users()[user]
    assert "@" not in env.get("NATS_URL", "")  # no credentials in a URL that gets logged
    for key, value in service_env(compose, service).items():
        monkeypatch.setenv(key, value)
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


# Where each app service serves its metrics page (the API's is on its own port).
METRICS_PORTS = {
    "relay": "9101",
    **{name: "9102" for name in WORKERS},
    "consumers": "9103",
    **{name: "9104" for name in CHOREOGRAPHY},
    "api": "8000",
}
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"


def test_every_long_running_service_has_a_health_check_on_a_port_it_serves(compose):
    for name, service in compose["services"].items():
        if name in ("migrate", "temporal-ui"):
            continue  # one-shot; the UI is only looked at
        test = " ".join(service["healthcheck"]["test"])
        if name in METRICS_PORTS:
            assert f"localhost:{METRICS_PORTS[name]}/" in test, name
    # Reachable from Prometheus in another container.
    for name, variable in [
        ("relay", "SAGA_RELAY_METRICS_HOST"),
        ("consumers", "SAGA_CONSUMERS_METRICS_HOST"),
        *((name, "SAGA_CHOREOGRAPHY_METRICS_HOST") for name in CHOREOGRAPHY),
    ]:
        assert compose["services"][name]["environment"][variable] == "0.0.0.0", name
    for name in WORKERS:
        assert compose["services"][name]["environment"]["SAGA_WORKER_METRICS_HOST"] == "0.0.0.0"


def test_no_service_runs_in_development_mode(compose, monkeypatch):
    assert set(APP_SERVICES) <= set(our_services(compose))
    for service in our_services(compose):
        env = service_env(compose, service)
        assert env.get("SAGA_ENVIRONMENT") == "production", service


@pytest.mark.parametrize(("service", "needs"), [("api", "api"), *((w, "worker") for w in WORKERS)])
def test_services_start_with_what_the_operator_supplies(compose, service, needs, monkeypatch):
    for key, value in service_env(compose, service).items():
        monkeypatch.setenv(key, value)

    settings = checked_settings(needs)

    assert settings.environment == "production"
    assert settings.payload_codec_key is not None
    assert (settings.card_token_key is not None) == (service in ("api", "worker-payments"))
    if service == "api":
        assert [k.get_secret_value() for k in settings.api_admin_keys] == ["admin-key"]
        assert [k.get_secret_value() for k in settings.api_order_keys] == ["order-key"]


@pytest.mark.parametrize("missing", required_variables())
def test_the_stack_refuses_to_start_without_each_secret(compose, missing):
    short = {k: v for k, v in operator_env().items() if k != missing}
    refused = []
    for service in compose["services"]:
        try:
            service_env(compose, service, short)
        except Refused as err:
            refused.append(service)
            assert str(err).startswith(f"{missing}: set {missing}")
    assert refused, f"no service needs {missing}"


def test_no_secret_has_a_value_in_the_file(compose):
    """Each secret setting is a reference the operator must fill; no default, no literal."""
    for name, service in compose["services"].items():
        for key, value in service.get("environment", {}).items():
            field = key.removeprefix("SAGA_").lower()
            if key.startswith("SAGA_") and field in Settings.model_fields and is_secret(field):
                reference = REFERENCE.fullmatch(str(value))
                assert reference is not None, (name, key)
                # Only an optional list may default, and only to an empty one.
                assert reference["op"] in (":?", "?") or reference["arg"] == "[]", (name, key)


def test_temporal_is_reached_from_the_network_only_and_the_ui_from_this_host(compose):
    services = compose["services"]
    assert "ports" not in services["temporal"]
    for mapping in services["temporal-ui"].get("ports", []):
        assert str(mapping).startswith("127.0.0.1:"), mapping
    for mapping in services["prometheus"].get("ports", []):
        assert str(mapping).startswith("127.0.0.1:"), mapping
    published = {n for n, s in services.items() if s.get("ports")}
    assert published <= {"api", "temporal-ui", "prometheus"}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → the host path mounted there read-only."""
    found = {}
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        target, _, mode = rest.partition(":")
        if mode == "ro":
            found[target] = source
    return found


def prometheus_config() -> dict[str, Any]:
    return dict(yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text()))


def test_prometheus_runs_the_repositorys_config_and_alert_rules(compose):
    service = compose["services"]["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in service["command"])
    config_path = Path(flags["config.file"])
    mounted = mounts(service)
    assert mounted[str(config_path)] == "./deploy/prometheus/prometheus.yml"
    # Rule files resolve against the configuration's directory.
    for rules in prometheus_config()["rule_files"]:
        source = mounted[str(config_path.parent / rules)]
        assert (ROOT / source).resolve() == (PROMETHEUS_DIR / rules).resolve()
        assert (PROMETHEUS_DIR / rules).is_file()


def scrape_targets() -> dict[str, tuple[str, str]]:
    """Compose service → (job, port) for every name the scrape config resolves."""
    found = {}
    for job in prometheus_config()["scrape_configs"]:
        for lookup in job["dns_sd_configs"]:
            for name in lookup["names"]:
                found[name] = (job["job_name"], str(lookup["port"]))
    return found


def test_prometheus_scrapes_every_metrics_page_by_its_service_name_and_port(compose):
    targets = scrape_targets()
    assert set(targets) == set(METRICS_PORTS)
    assert set(targets) <= set(compose["services"])
    for name, (job, port) in targets.items():
        assert port == METRICS_PORTS[name], name
        # One job per kind of process, as stack.prometheus_config names them locally.
        kind = "worker" if name in WORKERS else "choreography" if name in CHOREOGRAPHY else name
        assert job == kind, name
    assert compose["services"]["api"]["environment"]["SAGA_API_HOST"] == "0.0.0.0"


# Who each app service connects to PostgreSQL as (docs/security.md): a
# service's worker and its choreography handlers are that service.
LOGIN_OF = {
    "migrate": "saga_migrator",
    "api": "app_api",
    "relay": "app_relay",
    "consumers": "app_consumers",
    **{f"worker-{b.value}": f"app_{b.value}" for b in Bulkhead},
    **{f"choreography-{b.value}": f"app_{b.value}" for b in Bulkhead},
}
# The group roles of migration 0015 each login is a member of: its service's,
# and the branch roles of the 2PC branches it prepares or finishes.
GROUPS_OF = {
    "app_orders": {"saga_orders", "saga_coordinator", "saga_xa_inventory", "saga_xa_payments"},
    "app_inventory": {"saga_inventory", "saga_xa_inventory"},
    "app_payments": {"saga_payments", "saga_xa_payments"},
    "app_shipping": {"saga_shipping"},
    "app_relay": {"saga_relay"},
    "app_consumers": {"saga_readmodels"},
    "app_api": {"saga_api"},
}


def init_script_logins() -> dict[str, str]:
    """Each login the init script creates, with the rest of its CREATE ROLE statement."""
    text = INIT_SCRIPT.read_text()
    return dict(re.findall(r"CREATE ROLE (\w+) LOGIN ([^;]*);", text))


def test_every_app_service_connects_as_its_own_login(compose):
    assert set(LOGIN_OF) == set(APP_SERVICES)
    for service, login in LOGIN_OF.items():
        url = make_url(
            interpolate(compose["services"][service]["environment"]["DATABASE_URL"], operator_env())
        )
        assert url.username == login, service


def test_no_login_is_a_superuser_or_may_make_roles(compose):
    logins = init_script_logins()
    assert set(LOGIN_OF.values()) | {"temporal"} <= set(logins)
    bootstrap = compose["services"]["postgres"]["environment"]["POSTGRES_USER"]
    assert bootstrap not in logins and bootstrap not in LOGIN_OF.values()
    for login, rest in logins.items():
        attributes = rest.upper().split()
        for power in ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS"):
            assert power not in attributes, (login, power)


def test_each_login_is_a_member_of_its_services_group_roles():
    memberships = {
        login: set(re.findall(r"\w+", rest.partition("IN ROLE")[2]))
        for login, rest in init_script_logins().items()
    }
    assert {login: memberships[login] for login in GROUPS_OF} == GROUPS_OF
    assert memberships["saga_migrator"] == memberships["temporal"] == set()


def test_the_init_script_creates_every_group_role_the_migration_grants_to():
    spec = importlib.util.spec_from_file_location(
        "service_roles", ROOT / "migrations" / "versions" / "0015_service_roles.py"
    )
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    block = INIT_SCRIPT.read_text().split("-- GROUP ROLES")[1].split("-- END GROUP ROLES")[0]
    assert re.findall(r"CREATE ROLE (\w+) NOLOGIN;", block) == list(migration.GROUP_ROLES)


def test_no_password_is_written_in_the_compose_file():
    text = (ROOT / "docker-compose.yml").read_text()
    # Every variable is required: `${X:-default}` or `${X}` could run on a default
    # (but for the optional list of read keys, empty unless set).
    optional = ["${SAGA_API_READ_KEYS:-[]}"]
    assert [v for v in re.findall(r"\$\{[^}]*\}", text) if v not in optional] == [
        m.group(0) for m in REQUIRED_VARIABLE.finditer(text)
    ]
    passwords = re.findall(r"^\s*(\w*(?:PASSWORD|PWD)\w*):\s*(.*)$", text, re.MULTILINE)
    assert passwords
    for name, value in passwords:
        assert REQUIRED_VARIABLE.fullmatch(value.strip()), name
    urls = re.findall(r"(postgres\S*://[^:@\s]+(?::(\$\{[^}]*\}|[^@\s]*))?@)", text)
    assert urls
    for url, password in urls:
        assert REQUIRED_VARIABLE.fullmatch(password), url


def test_postgres_runs_the_init_script_and_temporal_has_its_own_login(compose):
    postgres = compose["services"]["postgres"]
    assert any(
        volume.startswith("./deploy/postgres/init.sh:/docker-entrypoint-initdb.d/")
        for volume in postgres["volumes"]
    )
    assert INIT_SCRIPT.stat().st_mode & 0o111
    temporal = compose["services"]["temporal"]["environment"]
    assert temporal["POSTGRES_USER"] == "temporal"
    # The init script made its databases; it needs no right to make more.
    assert temporal["SKIP_DB_CREATE"] == "true"
    script = INIT_SCRIPT.read_text()
    for database in ("temporal", "temporal_visibility"):
        assert f"CREATE DATABASE {database} OWNER temporal;" in script


def test_only_the_programs_that_seal_or_open_card_tokens_hold_the_key(compose):
    holders = {
        name
        for name, s in compose["services"].items()
        if "SAGA_CARD_TOKEN_KEY" in s.get("environment", {})
    }
    assert holders == {"api", "worker-payments", "choreography-payments"}


def test_only_temporal_clients_hold_the_codec_key(compose):
    """It decrypts every workflow payload: the relay, the consumers, the handlers never need it."""
    holders = {
        name
        for name, s in compose["services"].items()
        if "SAGA_PAYLOAD_CODEC_KEY" in s.get("environment", {})
    }
    assert holders == {"api", *WORKERS}


def test_the_workflow_worker_has_each_services_pool_under_its_login(compose):
    """LOCAL steps run on the workflow worker (worker.open_bulkheads): each
    service's pool connects as that service's own login, never as orders'."""
    env = compose["services"]["worker-orders"]["environment"]
    for bulkhead in Bulkhead:
        if bulkhead is Bulkhead.ORDERS:
            continue
        url = make_url(interpolate(env[f"SAGA_{bulkhead.name}_DATABASE_URL"], operator_env()))
        assert url.username == f"app_{bulkhead.value}", bulkhead


# Run from a checkout only (benches, chaos drills, the dual-write demo, the tests),
# never by an installed command or an image's service.
CHECKOUT_ONLY = {"bench", "chaos", "dual_write", "tests"}


def test_every_package_the_services_import_is_installed():
    """An installed command (sagactl) does not see the checkout: a package left out
    of pyproject is a ModuleNotFoundError at its first import, in the image too."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {
        p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    packages = {init.parent.name for init in ROOT.glob("*/__init__.py")}

    assert packages - CHECKOUT_ONLY <= installed, "add them to pyproject.toml (and the Dockerfile)"
