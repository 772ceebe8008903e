"""What `make run` checks before it starts anything: every port it will bind is free.

And which metrics pages it serves (the banner and Prometheus' scrape list name
them): a port of 0 is off.
"""

from __future__ import annotations

from settings import LOOPBACK, Settings
from stack.errors import StackError
from stack.ports import port_in_use

METRICS_PAGES = ("worker", "relay", "consumers", "choreography")


def metrics_endpoints(s: Settings) -> list[tuple[str, str, int]]:
    """(process, host, port) of each metrics page `make run` serves; a port of 0 is off."""
    pages = [(name, s.metrics(name)) for name in METRICS_PAGES]
    return [(name, page.host, page.port) for name, page in pages if page.port]


def check_ports(s: Settings) -> None:
    """One clear line instead of a server's bind error buried in its log."""
    wanted: list[tuple[str, int, str]] = [(s.api_host, s.api_port, "SAGA_API_PORT")]
    if s.database_url is None:
        wanted.append((LOOPBACK, s.pg_port, "SAGA_PG_PORT or DATABASE_URL"))
    if s.temporal_address is None:
        wanted.append((LOOPBACK, s.temporal_port, "SAGA_TEMPORAL_PORT or TEMPORAL_ADDRESS"))
        wanted.append((LOOPBACK, s.temporal_ui_port, "SAGA_TEMPORAL_UI_PORT"))
    if s.nats_url is None:
        wanted.append((LOOPBACK, s.nats_port, "SAGA_NATS_PORT or NATS_URL"))
    if s.payment_provider_url is None:
        hint = "SAGA_PAYMENT_PROVIDER_PORT or SAGA_PAYMENT_PROVIDER_URL"
        wanted.append((LOOPBACK, s.payment_provider_port, hint))
    # A page that cannot bind is only logged by its process: the banner would
    # advertise another process's page.
    for name, host, port in metrics_endpoints(s):
        wanted.append((host, port, f"SAGA_{name.upper()}_METRICS_PORT (0: off)"))
    taken = [
        f"port {port} is in use: set {hint}"
        for host, port, hint in wanted
        if port_in_use(port, host)
    ]
    if taken:
        raise StackError("; ".join(taken))
