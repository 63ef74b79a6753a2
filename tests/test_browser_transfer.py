"""File transfer in the page: upload, download, drop and their errors, against the real sshd."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext

from tests.browser import TerminalPage, chromium
from tests.fixtures_server import RunningServer

pytestmark = pytest.mark.browser

MIB = 1024 * 1024
# What Chromium logs for each refused request the test makes on purpose.
REFUSED = "Failed to load resource: the server responded with a status of"


@pytest.fixture
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


def item(page: TerminalPage, index: int) -> dict[str, Any]:
    """The page's record of its `index`th transfer."""
    found: dict[str, Any] = page.eval(
        "(i) => ({...window.__ec2terminal.transfers.items[i]})", index
    )
    return found


def wait_item(page: TerminalPage, index: int, state: str, timeout: float = 30) -> dict[str, Any]:
    """Wait until transfer `index` is in `state` (done or failed); return it."""
    page.page.wait_for_function(
        """([i, s]) => {
          const item = window.__ec2terminal.transfers.items[i];
          if (!item || item.state === "running") return false;
          return item.state === s ? true : item.message;  // a wrong end: stop and show it
        }""",
        arg=[index, state],
        timeout=timeout * 1000,
    )
    found = item(page, index)
    assert found["state"] == state, found
    return found


def download(page: TerminalPage, path: Path) -> None:
    page.page.locator("#download").click()
    page.page.locator("#download-path").fill(str(path))
    page.page.locator("#download-go").click()


def test_upload_then_download_20_mib_and_the_errors_on_the_way(
    browser: BrowserContext, server: RunningServer, tmp_path: Path
) -> None:
    data = os.urandom(20 * MIB)
    local = tmp_path / "upload.bin"
    local.write_bytes(data)
    remote = tmp_path / "remote"
    remote.mkdir()
    page = TerminalPage.open(browser, server.link())
    page.wait_prompt()

    page.page.locator("#upload").click()
    page.page.locator("#upload-dir").fill(str(remote))
    with page.page.expect_file_chooser() as chooser:
        page.page.locator("#upload-choose").click()
    chooser.value.set_files(str(local))
    uploaded = wait_item(page, 0, "done", timeout=180)
    assert uploaded["message"] == f"uploaded to {remote}/upload.bin"
    assert uploaded["loaded"] == uploaded["total"] == len(data)
    landed = (remote / "upload.bin").read_bytes()
    assert hashlib.sha256(landed).digest() == hashlib.sha256(data).digest()

    with page.page.expect_download(timeout=180_000) as started:
        download(page, remote / "upload.bin")
    saved = started.value
    assert saved.suggested_filename == "upload.bin"
    assert hashlib.sha256(Path(saved.path()).read_bytes()).digest() == hashlib.sha256(data).digest()
    assert wait_item(page, 1, "done")["message"] == "saved as upload.bin"

    download(page, remote / "missing.txt")
    missing = wait_item(page, 2, "failed")
    assert missing["code"] == "file_not_found"
    assert "no such file or directory" in page.page.locator("#transfer-panel").inner_text()

    secret = remote / "secret.txt"
    secret.write_text("not for the SSH user\n")
    secret.chmod(0o000)
    download(page, secret)
    refused = wait_item(page, 3, "failed")
    assert refused["code"] == "permission_denied"
    assert "permission denied" in page.page.locator("#transfer-panel").inner_text()

    # Dropping a file on the terminal uploads it too; an existing one is replaced on request.
    drop_js = """(text) => {
      const files = new DataTransfer();
      files.items.add(new File([text], "dropped.txt", {type: "text/plain"}));
      const target = document.getElementById("terminal");
      for (const type of ["dragover", "drop"]) {
        const init = {dataTransfer: files, bubbles: true, cancelable: true};
        target.dispatchEvent(new DragEvent(type, init));
      }
    }"""
    page.eval(drop_js, "first\n")
    wait_item(page, 4, "done")
    page.eval(drop_js, "second\n")
    assert wait_item(page, 5, "failed")["code"] == "file_exists"
    assert (remote / "dropped.txt").read_text() == "first\n"
    page.page.locator("#transfer-panel .replace").click()
    wait_item(page, 6, "done")
    assert (remote / "dropped.txt").read_text() == "second\n"
    page.screenshot("browser-transfer.png")

    page.run("echo still-here-$((6*7))")
    page.wait_line("still-here-42")
    assert [e for e in page.errors if not e.startswith(REFUSED)] == []
    secret.chmod(0o600)
