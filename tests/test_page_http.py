"""What the page's features add to the HTTP surface: `config`, the recordings page, the CSP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.cli.main import build_parser
from app.cli.serve import settings_from_args
from app.http.recordings import _quality
from tests.fixtures_server import ServerFactory
from tests.fixtures_sshd import Sshd

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


def test_config_tells_the_page_its_settings_and_nothing_else(
    server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    plain = server_factory(sshd)
    answer = httpx.get(f"{plain.base_url}config")
    assert answer.status_code == 200
    assert answer.json() == {"clipboard_osc52": False, "recordings": False}
    assert answer.headers["cache-control"] == "no-store"

    enabled = server_factory(
        sshd,
        base_path="/t/demo/",
        recordings_dir=str(tmp_path / "casts"),
        env={"EC2_TERMINAL_CLIPBOARD_OSC52": "true"},
    )
    assert httpx.get(f"{enabled.base_url}config").json() == {
        "clipboard_osc52": True,
        "recordings": True,
    }


def test_recordings_answer_a_browser_with_the_player_page(
    server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    server = server_factory(sshd, recordings_dir=str(tmp_path / "casts"))
    url = f"{server.base_url}recordings/"
    page = httpx.get(url, headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200, "the page itself needs no login; its list does"
    assert page.headers["content-type"].startswith("text/html")
    assert "../static/dist/recordings.js" in page.text
    assert page.headers["vary"] == "Accept"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'wasm-unsafe-eval';" in policy
    assert "unsafe-inline" not in policy
    assert httpx.get(f"{server.base_url}static/dist/recordings.js").status_code == 200

    # Anything else gets the JSON the contract names, with the same auth as before.
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        assert httpx.get(url, headers=headers).status_code == 401
    assert httpx.get(f"{url}?format=json", headers={"Accept": BROWSER_ACCEPT}).status_code == 401
    auth = {"Authorization": f"Bearer {server.token}"}
    listing = httpx.get(f"{url}?format=json", headers=auth | {"Accept": BROWSER_ACCEPT})
    assert listing.json() == {"recordings": [], "enabled": True}
    assert listing.headers["vary"] == "Accept"
    assert httpx.get(url, headers=auth).json() == {"recordings": [], "enabled": True}
    assert httpx.get(f"{url}nothing.cast", headers=auth).status_code == 404


def test_recordings_when_the_server_does_not_record(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd)
    auth = {"Authorization": f"Bearer {server.token}"}
    url = f"{server.base_url}recordings/"
    assert httpx.get(url, headers=auth).json() == {"recordings": [], "enabled": False}
    assert httpx.get(f"{url}x.cast", headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.4, application/json;q=0.3", True),
        ("text/*, application/json;q=0.9", True),
        ("text/html;q=0, */*", False),
        ("text/html;q=bogus, */*;q=0.1", False),
    ],
)
def test_which_answer_an_accept_header_gets(accept: str, page: bool) -> None:
    assert (_quality(accept, "text/html") > _quality(accept, "application/json")) is page


def test_the_terminal_page_allows_style_attributes_and_nothing_inline_else(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd)
    policy = httpx.get(server.base_url).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["style-src-attr"] == "'unsafe-inline'"
    assert [d for d in directives.values() if "unsafe" in d] == ["'unsafe-inline'"]


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, False),
        (["--clipboard-osc52"], {}, True),
        (["--clipboard-osc52", "off"], {"EC2_TERMINAL_CLIPBOARD_OSC52": "on"}, False),
        ([], {"EC2_TERMINAL_CLIPBOARD_OSC52": "1"}, True),
        ([], {"EC2_TERMINAL_CLIPBOARD_OSC52": "no"}, False),
    ],
)
def test_the_clipboard_switch(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], expected: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["serve", "--host", "h", *argv])
    assert settings_from_args(args).clipboard_osc52 is expected
