"""The application's wiring: one list of services, and the kit's tables made from it."""

from __future__ import annotations

import ast
from pathlib import Path

from db.tables import metadata, service_tables
from wiring.served import INBOX, OWNERS, RELAYED
from wiring.services import RELAY_PARTITIONS, SERVICES, XA_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
# Migrations keep their own copies (a merged migration never changes); tests may spell it out.
NOT_SEARCHED = {".venv", "build", "node_modules", "migrations", "tests", "__pycache__"}


def spelled_out(root: Path, names: set[str]) -> list[str]:
    """Where a literal tuple, list or set holds every one of `names`: `path:line`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in NOT_SEARCHED or part.startswith(".") for part in relative.parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                values = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if names <= values:
                    found.append(f"{relative}:{node.lineno}")
    return found


def test_the_service_list_is_written_once_in_the_wiring():
    assert spelled_out(ROOT, set(SERVICES)) == ["wiring/services.py:10"]


def test_the_check_finds_a_copy_of_the_list(tmp_path):
    (tmp_path / "audit.py").write_text(
        'for s in ("shipping", "orders", "payments", "inventory"):\n    pass\n'
    )
    assert spelled_out(tmp_path, set(SERVICES)) == ["audit.py:1"]


def test_the_relay_serves_every_services_outbox_in_the_lists_order():
    assert RELAYED.services == SERVICES
    assert RELAYED.outboxes == tuple(service_tables[s].outbox for s in SERVICES)
    assert RELAYED.partitions == RELAY_PARTITIONS
    for outbox in RELAYED.outboxes:
        computed = outbox.c.partition.computed
        assert computed is not None and str(computed.sqltext).endswith(f" % {RELAY_PARTITIONS}")


def test_every_kit_table_of_the_wiring_is_on_the_one_metadata():
    kit = [*RELAYED.outboxes, RELAYED.leases, RELAYED.members, INBOX]
    kit += [service_tables[s].idempotency for s in SERVICES]
    assert all(metadata.tables[t.fullname] is t for t in kit)
    assert {f"{schema}.xa_branches" for schema in XA_SCHEMAS.values()} <= set(metadata.tables)


def test_every_aggregate_is_owned_by_a_service_of_the_list():
    assert set(OWNERS.values()) <= set(SERVICES)
