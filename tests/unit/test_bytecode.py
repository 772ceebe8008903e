"""stack.bytecode: workflow modules get their .pyc even where Python is told not to
write bytecode, so the sandbox does not compile their source for every workflow run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from stack.bytecode import compile_workflows


def test_modules_are_compiled_though_python_writes_no_bytecode(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    module = tmp_path / "a_workflow.py"
    module.write_text("STEPS = ('reserve', 'charge')\n")

    assert compile_workflows(tmp_path)

    cached = Path(importlib.util.cache_from_source(str(module)))
    assert cached.exists() and cached.stat().st_size > 0


def test_a_module_that_does_not_compile_is_reported(tmp_path: Path):
    (tmp_path / "broken.py").write_text("def (:\n")
    assert not compile_workflows(tmp_path)
