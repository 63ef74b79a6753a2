"""docs/reference.md is generated (hack/gen-reference) and current: every chart value of the
schema and every command's --help are in it as they are now."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hack import reference
from tests.fixtures_kube import ROOT


def test_the_committed_reference_is_current() -> None:
    done = subprocess.run(
        [str(ROOT / "hack/gen-reference"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_stale_reference_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "reference.md"
    stale.write_text(reference.OUTPUT.read_text() + "A line written by hand.\n")
    monkeypatch.setattr(reference, "OUTPUT", stale)
    monkeypatch.setattr(reference, "ROOT", tmp_path)
    assert reference.main(["gen-reference", "--check"]) == 1


def test_every_value_and_command_is_in_it() -> None:
    text = reference.OUTPUT.read_text()
    schema = json.loads((ROOT / "charts/ec2-terminal/values.schema.json").read_text())
    paths = [path for _, _, rows in reference.groups(schema) for path, _ in rows]
    assert len(paths) > 90
    for path in paths:
        assert f"| `{path}` |" in text, path
    for command in (
        "ec2-terminal serve",
        "ec2-terminal link",
        "ec2-terminal worker",
        "ec2-terminal-operator",
    ):
        assert f"### `{command}`" in text
    assert "--host-key-policy" in text
    assert "--all-namespaces" in text
