"""docs/configuration.md is what `Settings` says (stack.config_page writes it), and no page
names a SAGA_ variable that Settings does not read."""

from __future__ import annotations

import re
from pathlib import Path

from settings import Settings, env_names
from stack.config_page import PAGE, main, render

ROOT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\bSAGA_[A-Z0-9_]*[A-Z0-9]\b(?![{<])")


def test_the_configuration_page_is_written_from_settings():
    assert PAGE.read_text() == render(), "run: python -m stack.config_page"
    assert main(["--check"]) == 0


def test_every_setting_has_a_line_naming_each_of_its_variables():
    page = PAGE.read_text()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a docstring"
        for variable in env_names(name):
            assert f"`{variable}`" in page, variable
    assert "`SAGA_RELAY_METRICS_HOST`" in page  # the one the README's table missed


def test_no_page_names_a_variable_settings_does_not_read():
    known = {variable for name in Settings.model_fields for variable in env_names(name)}
    pages = [ROOT / "README.md", ROOT / "docker-compose.yml", *sorted((ROOT / "docs").glob("*.md"))]
    unknown = {
        f"{page.relative_to(ROOT)}: {found}"
        for page in pages
        for found in VARIABLE.findall(page.read_text())
        if found not in known
    }
    assert not unknown, sorted(unknown)
