"""Unit tests of the paths a transfer names (the transfers themselves run against sshd)."""

from __future__ import annotations

import pytest

from app.transfer.errors import BadPath
from app.transfer.names import MAX_PATH, attachment, checked_path, temp_path, upload_target


@pytest.mark.parametrize("raw", [None, "", "  ", "a\0b", "x" * (MAX_PATH + 1)])
def test_bad_paths_are_refused(raw: str | None) -> None:
    with pytest.raises(BadPath):
        checked_path(raw)


def test_upload_targets_name_a_file() -> None:
    assert upload_target("notes.txt") == ("", "notes.txt")
    assert upload_target("/tmp/a/b.bin") == ("/tmp/a", "b.bin")
    for directory in ("/tmp/", ".", "..", "a/.."):
        with pytest.raises(BadPath, match="names a directory"):
            upload_target(directory)


def test_temporary_names_are_hidden_beside_the_target_and_short() -> None:
    first, second = temp_path("/srv", "x" * 250), temp_path("/srv", "x" * 250)
    assert first != second
    assert first.startswith("/srv/.xxx")
    assert first.endswith(".part")
    assert len(first.rsplit("/", 1)[1]) < 120
    assert temp_path("", "f").startswith(".f.ec2-terminal-")


def test_the_download_name_is_quoted_for_the_header() -> None:
    assert attachment("/var/log/syslog") == (
        "attachment; filename=\"syslog\"; filename*=UTF-8''syslog"
    )
    assert attachment('dir/ré"sumé; x.pdf') == (
        "attachment; filename=\"r_sum_x.pdf\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9%3B%20x.pdf"
    )
    assert attachment("/").startswith('attachment; filename="download"')
