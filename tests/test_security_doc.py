"""SECURITY.md against the code: every promise names a test that exists, and the defaults it
states are the chart's."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.doctables import tables

ROOT = Path(__file__).resolve().parents[1]
SECURITY = ROOT / "SECURITY.md"
TEST_NAME = re.compile(r"`(test_\w+)`")


def defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        names |= set(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE))
    return names


def test_every_promise_names_tests_that_exist() -> None:
    promised = [t for t in tables(SECURITY.read_text()) if "test" in t.header]
    assert len(promised) >= 2, "SECURITY.md lost its tables of defaults and targets"
    existing = defined_tests()
    for table in promised:
        for row in table.rows:
            named = TEST_NAME.findall(row["test"])
            if not row["test"] and "allowed" in row.get("default", ""):
                continue  # what the defaults allow is stated, not defended
            assert named, f"SECURITY.md: no test for {row}"
            missing = [name for name in named if name not in existing]
            assert not missing, f"SECURITY.md names tests that do not exist: {missing}"


def test_the_stated_network_defaults_are_the_charts() -> None:
    values = yaml.safe_load((ROOT / "charts/ec2-terminal/values.yaml").read_text())
    network = values["networkPolicy"]
    assert network["enabled"] is True
    assert network["egress"]["enabled"] is True
    assert network["egress"]["ssh"]["ports"] == [22]
    text = SECURITY.read_text()
    assert "(default `[22]`)" in text
    for blocks in (network["egress"]["ssh"]["cidrs"], network["egress"]["https"]["cidrs"]):
        excepted = {e for block in blocks for e in block.get("except", [])}
        assert "169.254.0.0/16" in excepted, blocks
