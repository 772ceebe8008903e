"""The project's modules form layers: no import circle, relay and consumers apart,
and the saga kit below the application.

Every `ast` import of every project .py file counts, the ones inside functions
too: a function-level import hides a circle from the interpreter, not from a
reader. The relay and the consumers meet only below them, in `messaging`. The
kit (unit of work, XA branches, relay, messaging, the consumers' machinery,
resilience, observability, the sagas' compensation skeleton) imports nothing of
the application: it is handed the tables and hooks it serves (wiring).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {".venv", "build", "node_modules", "site-packages", "__pycache__"}
APART = ("relay", "consumers")

# The kit: whole packages, and the kit's modules in packages shared with the
# application. Entrypoints (`__main__`) are the application's composition roots.
KIT_PACKAGES = ("relay", "messaging", "resilience", "observability")
KIT_MODULES = {
    "db.engine",
    "db.kit_tables",
    "db.metadata",
    "db.relay_ring",
    "db.unit_of_work",
    "db.xa",
    "consumers",
    "consumers.inbox",
    "consumers.metrics",
    "consumers.runner",
    "consumers.consumer",
    "consumers.service",
    "workflows.compensation",
    "workflows.metrics",
    "workflows.saga",
    "workflows.saga_hooks",
    "workflows.step_calls",
    "workflows.steps",
}
# Below kit and application alike: the settings' slices, the NATS login, and
# the shared vocabulary of steps, errors and 2PC messages.
SHARED = {
    "settings_slices",
    "security.nats_login",
    "domain.errors",
    "domain.saga",
    "domain.two_phase",
}
# Who reads `Settings`: the entry points (every `__main__`, the worker, the
# API's app factory, the programs in bench/, chaos/, stack/ and the corpus
# recorder) and the wiring that composes them. Every other module takes its
# slice (settings_slices), so it can be built without the environment.
SETTINGS_READERS = {"wiring", "stack", "bench", "chaos", "tests", "settings"}
SETTINGS_READER_MODULES = {"worker", "startup", "api.app", "history_corpus.record"}
# What the kit must never reach, named so that the check is seen to cover them.
APPLICATION = (
    "db.tables",
    "db.order_tables",
    "db.wallet_tables",
    "db.return_tables",
    "wiring",
    "wiring.services",
    "wiring.served",
    "wiring.order_hooks",
    "domain.orders",
    "domain.activities",
    "domain.choreography",
    "activities",
    "workflows.order_saga",
    "workflows.return_saga",
    "api",
    "consumers.order_history",
    "choreography",
)


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for every .py file of the project."""
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if any(p in SKIPPED or p.startswith(".") for p in parts):
            continue
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _targets(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join([p for p in parts if p] + ([base] if base else []))
    # `from relay import metrics` imports relay.metrics, not only relay.
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def imports(root: Path) -> dict[str, set[str]]:
    """Module → the project modules it imports, at any depth of its code."""
    files = module_files(root)
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, package):
                while target and target not in files:
                    target = target.rpartition(".")[0]
                # A package's own __init__ runs before its modules: not an edge back.
                own_package = name.startswith(f"{target}.") and files[target].name == "__init__.py"
                if target and target != name and not own_package:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            if group:
                found.append(sorted([v, *group]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def crossings(graph: dict[str, set[str]]) -> list[str]:
    """Imports from one of APART into the other: `importer -> imported`."""

    def top(name: str) -> str:
        return name.split(".")[0]

    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        for t in targets
        if top(m) in APART and top(t) in APART and top(m) != top(t)
    )


def in_kit(name: str) -> bool:
    if name.rpartition(".")[2] == "__main__":
        return False
    return name in KIT_MODULES or name.split(".")[0] in KIT_PACKAGES


def kit_reaching_out(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a kit module of anything but the kit and what is below it."""
    return sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if in_kit(m)
        for t in targets
        if not in_kit(t) and t not in SHARED
    )


def settings_readers_beyond_the_entry_points(graph: dict[str, set[str]]) -> list[str]:
    """Modules that import `settings` but are neither an entry point nor the wiring."""
    return sorted(
        f"{m} -> settings"
        for m, targets in graph.items()
        if any(t == "settings" or t.startswith("settings.") for t in targets)
        and m.split(".")[0] not in SETTINGS_READERS
        and m not in SETTINGS_READER_MODULES
        and m.rpartition(".")[2] != "__main__"
    )


def test_only_entry_points_and_the_wiring_read_settings():
    found = settings_readers_beyond_the_entry_points(imports(ROOT))
    assert found == [], f"take a slice (settings_slices) instead: {found}"


def test_the_check_sees_a_component_reading_settings(tmp_path):
    root = _tree(
        tmp_path,
        {
            "settings/__init__.py": "",
            "relay/__init__.py": "",
            "relay/polling_loop.py": "def run():\n    from settings import Settings\n",
            "relay/__main__.py": "from settings import Settings\n",
            "wiring/__init__.py": "",
            "wiring/root.py": "from settings import Settings\n",
        },
    )
    found = settings_readers_beyond_the_entry_points(imports(root))
    assert found == ["relay.polling_loop -> settings"]


def test_no_module_imports_itself_through_others():
    found = circles(imports(ROOT))
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_relay_and_consumers_import_nothing_of_each_other():
    found = crossings(imports(ROOT))
    assert found == [], f"relay and consumers meet only in messaging: {found}"


def test_the_kit_imports_nothing_of_the_application():
    graph = imports(ROOT)
    found = kit_reaching_out(graph)
    assert found == [], f"the kit is handed what it serves, never imports it: {found}"


def test_the_kit_and_the_application_modules_named_exist():
    # A module renamed away would pass the check above for nothing.
    graph = imports(ROOT)
    assert set(APPLICATION).issubset(graph)
    assert KIT_MODULES.issubset(graph)
    assert not any(in_kit(name) for name in APPLICATION)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_check_sees_a_circle_hidden_in_a_function(tmp_path):
    root = _tree(
        tmp_path,
        {
            "relay/__init__.py": "",
            "relay/service.py": "from relay import cdc\n",
            "relay/cdc.py": "def run():\n    from relay.service import run_relay\n",
            "relay/publisher.py": "from . import cdc\n",
        },
    )
    assert circles(imports(root)) == [["relay.cdc", "relay.service"]]


def test_the_check_sees_relay_importing_consumers_in_a_function(tmp_path):
    root = _tree(
        tmp_path,
        {
            "relay/__init__.py": "",
            "relay/service.py": "def run():\n    from consumers.stream import ensure_stream\n",
            "consumers/__init__.py": "",
            "consumers/stream.py": "",
        },
    )
    assert crossings(imports(root)) == ["relay.service -> consumers.stream"]


def test_the_check_sees_the_kit_importing_the_application_in_a_function(tmp_path):
    root = _tree(
        tmp_path,
        {
            "db/__init__.py": "",
            "db/unit_of_work.py": "def apply():\n    from db.tables import service_tables\n",
            "db/tables.py": "from wiring.services import SERVICES\n",
            "wiring/__init__.py": "",
            "wiring/services.py": "",
            "relay/__init__.py": "",
            "relay/__main__.py": "from wiring.services import SERVICES\n",
        },
    )
    assert kit_reaching_out(imports(root)) == ["db.unit_of_work -> db.tables"]
