"""docs/configuration.md, written from `Settings`: every variable, its default, what it does.

    python -m stack.config_page           # rewrite the page
    python -m stack.config_page --check   # exit 1, naming the page, if it is stale

Each field's docstring is its line (`use_attribute_docstrings`), so a setting
added without one, or a page not rewritten after a change, fails
tests/unit/test_config_page.py instead of drifting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from settings import Settings, env_names

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

HEADER = """# Configuration

<!-- Written by `python -m stack.config_page` from settings/; edit the docstrings there. -->

One settings class, [`settings/`](../settings/__init__.py), its fields declared in
groups (servers, api, workers, flows). Components never read it: entry points and
the composition root ([`wiring/root.py`](../wiring/root.py)) hand each one its typed
slice ([`settings_slices.py`](../settings_slices.py)). Every field reads
`SAGA_<FIELD>` from the environment; the three server addresses also read
the usual unprefixed names (`TEMPORAL_ADDRESS`, `DATABASE_URL`, `NATS_URL`).
When an address is set, `make run` uses that server and starts no embedded
one in its place. Lists and maps are JSON (`SAGA_API_ORDER_KEYS='["k1"]'`).
The embedded Temporal dev server runs with
`history.transferProcessorMaxPollRPS=1000`: with the default, each workflow
task waits about 40 ms for the server's transfer queue (`../shared/LIMITS.md`).

| variable | default | what it does |
| --- | --- | --- |
"""


def render() -> str:
    rows = [_row(name) for name in Settings.model_fields]
    return HEADER + "".join(rows)


def _row(name: str) -> str:
    field = Settings.model_fields[name]
    if not field.description:
        raise ValueError(f"Settings.{name} has no docstring: say what it does")
    variables = ", ".join(f"`{env}`" for env in env_names(name))
    return f"| {variables} | {_default(field)} | {_cell(field.description)} |\n"


def _default(field: Any) -> str:
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if value is None or value == []:
        return "unset" if value is None else "`[]`"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if PAGE.exists() and PAGE.read_text() == page:
            return 0
        print(f"{PAGE} is stale: run python -m stack.config_page", file=sys.stderr)
        return 1
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
