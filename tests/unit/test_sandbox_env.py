"""What the sandbox hands its children: settings fields as SAGA_* variables they can parse."""

from __future__ import annotations

from pathlib import Path

from settings import Settings
from stack.sandbox import child_env


def test_every_kind_of_field_reaches_a_child_as_the_value_it_was(monkeypatch):
    fields = {
        "api_port": 8123,
        "data_dir": Path("/tmp/x"),
        "temporal_sqlite_pragmas": {"journal_mode": "wal", "synchronous": "normal"},
    }
    for name, value in child_env(fields).items():
        monkeypatch.setenv(name, value)

    child = Settings()

    assert {name: getattr(child, name) for name in fields} == fields
