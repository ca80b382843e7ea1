"""docs/operations.md carries the settings table exactly as the Settings class renders it."""

from __future__ import annotations

from kat_scheduler.config.settings import Settings, env_name
from kat_scheduler.config.settings_doc import (
    OPERATIONS_MD,
    current_block,
    description_of,
    generated_block,
    render_table,
)


def test_operations_md_has_exactly_the_current_settings_table() -> None:
    block = current_block(OPERATIONS_MD.read_text())
    assert block is not None, "docs/operations.md lost its settings-table markers"
    assert block == generated_block(), (
        "docs/operations.md is out of date: run `.venv/bin/python -m kat_scheduler.config.settings_doc --write`")


def test_every_setting_has_a_row_with_its_variable_and_a_description() -> None:
    table = render_table()
    for name, field in Settings.model_fields.items():
        assert f"| `{env_name(name)}` |" in table
        assert description_of(name, field), f"{name} has no description (kat_scheduler/config/settings_doc.py)"


def test_defaults_types_and_bounds_are_rendered() -> None:
    rows = {line.split(" | ")[0].strip("| `"): line for line in render_table().splitlines()[2:]}
    assert rows["SCHEDULER_LEASE_SECONDS"].startswith("| `SCHEDULER_LEASE_SECONDS` | `300.0` | float, > 0 |")
    assert "| unset | str or unset |" in rows["CELERY_BROKER_URL"]
    assert "| `text` | text \\| json |" in rows["SCHEDULER_LOGGING_FORMAT"]
    assert "| false | bool |" in rows["DEBUG"]
