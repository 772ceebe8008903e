"""The saga kit knows nothing of orders: what its modules may import, and a saga of its own.

workflows/saga.py (with the hooks and step calls it is built on) may import
only the standard library, `temporalio`, the compensation stack, the step
declarations and the generic progress model; those import nothing of the
project but the progress model. Any other import would weld the kit to a domain.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
ALLOWED = {
    "workflows/saga.py": {
        "temporalio",
        "workflows.compensation",
        "workflows.steps",
        "workflows.step_calls",
        "workflows.saga_hooks",
        "domain.saga",
    },
    "workflows/step_calls.py": {
        "temporalio",
        "workflows.compensation",
        "workflows.steps",
        "workflows.saga_hooks",
        "domain.saga",
    },
    "workflows/saga_hooks.py": {
        "temporalio",
        "workflows.compensation",
        "workflows.steps",
        "domain.saga",
    },
    "workflows/steps.py": {"temporalio", "domain.saga"},
    "workflows/compensation.py": {"temporalio"},
    "domain/saga.py": {"pydantic"},
}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def outside(name: str, allowed: set[str]) -> bool:
    root = name.split(".")[0]
    if root in STDLIB:
        return False
    return not any(name == a or name.startswith(f"{a}.") for a in allowed)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_the_kit_imports_only_what_it_may(module):
    found = {name for name in imported(ROOT / module) if outside(name, ALLOWED[module])}
    assert found == set(), f"{module} imports {sorted(found)}"


def test_the_check_sees_a_forbidden_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from domain.orders import PlaceOrder\n")
    assert {n for n in imported(probe) if outside(n, ALLOWED["workflows/saga.py"])} == {
        "domain.orders"
    }
