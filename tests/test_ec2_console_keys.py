"""The console host key parser and verifier, on keys made by the real ssh-keygen."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from app.ec2.console_keys import (
    ConsoleOutputVerifier,
    console_text,
    parse_console_host_keys,
)
from app.ssh.errors import HostKeyNotVerifiable
from tests.fixtures_sshd import fingerprint, keygen


@dataclass(frozen=True)
class MadeKey:
    """A host key made by ssh-keygen: its public line, fingerprint and parsed form."""

    line: str
    sha256: str
    kind: str

    @property
    def key(self) -> asyncssh.SSHKey:
        return asyncssh.import_public_key(self.line)


@pytest.fixture(scope="module")
def host_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MadeKey]:
    """One ed25519, ECDSA and RSA host key, plus a second ed25519 key nobody printed."""
    directory = tmp_path_factory.mktemp("console-keys")
    made: dict[str, MadeKey] = {}
    for name, kind in (
        ("ed25519", "ed25519"),
        ("ecdsa", "ecdsa"),
        ("rsa", "rsa"),
        ("other", "ed25519"),
    ):
        path = directory / name
        line = keygen(path, kind)
        made[name] = MadeKey(line, fingerprint(Path(f"{path}.pub")), kind.upper())
    return made


def cloud_init_console(keys: list[MadeKey], prefix: str = "") -> str:
    """Console text in the shape cloud-init prints on Amazon Linux and Ubuntu."""
    lines = [
        "[    0.000000] Linux version 6.1.0 (builder@amazon)",
        f"{prefix}ec2: ",
        f"{prefix}ec2: #############################################################",
        f"{prefix}ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----",
        *(f"{prefix}ec2: 256 {k.sha256} root@ip-10-0-0-5 ({k.kind})" for k in keys),
        f"{prefix}ec2: -----END SSH HOST KEY FINGERPRINTS-----",
        f"{prefix}ec2: #############################################################",
        "-----BEGIN SSH HOST KEY KEYS-----",
        *(" ".join(k.line.split()[:2]) + " root@ip-10-0-0-5" for k in keys),
        "-----END SSH HOST KEY KEYS-----",
        "[   12.5] cloud-init[1234]: Cloud-init v. 23.2 finished",
    ]
    return "\r\n".join(lines) + "\r\n"


def test_parses_keys_and_fingerprints_of_every_type(host_keys: dict[str, MadeKey]) -> None:
    printed = [host_keys["ed25519"], host_keys["ecdsa"], host_keys["rsa"]]
    found = parse_console_host_keys(cloud_init_console(printed))
    assert [k.public_data for k in found.keys] == [k.key.public_data for k in printed]
    assert found.fingerprints == {k.sha256 for k in printed}
    assert found.trusted_fingerprints == {k.sha256 for k in printed}


def test_prefixed_lines_still_parse(host_keys: dict[str, MadeKey]) -> None:
    prefix = "<14>Nov 23 09:00:00 cloud-init: "
    found = parse_console_host_keys(cloud_init_console([host_keys["ed25519"]], prefix))
    assert found.fingerprints == {host_keys["ed25519"].sha256}
    assert len(found.keys) == 1


def test_base64_and_plain_console_text_are_both_accepted(host_keys: dict[str, MadeKey]) -> None:
    text = cloud_init_console([host_keys["ed25519"]])
    encoded = base64.b64encode(text.encode()).decode()
    assert console_text(encoded) == text
    assert console_text(text) == text
    assert console_text(text.encode()) == text
    assert console_text(None) == ""
    assert console_text("plain boot log without markers") == "plain boot log without markers"


def test_a_console_without_blocks_is_empty() -> None:
    found = parse_console_host_keys("Linux version 2.6.16-xenU\nBIOS-provided physical RAM map:\n")
    assert found.empty


def test_a_truncated_block_is_ignored(host_keys: dict[str, MadeKey]) -> None:
    key = host_keys["ed25519"]
    text = f"-----BEGIN SSH HOST KEY KEYS-----\n{key.line}\n"
    assert parse_console_host_keys(text).empty


def test_the_last_complete_block_wins(host_keys: dict[str, MadeKey]) -> None:
    old, new = host_keys["other"], host_keys["ed25519"]
    text = cloud_init_console([old]) + cloud_init_console([new])
    found = parse_console_host_keys(text)
    assert [k.public_data for k in found.keys] == [new.key.public_data]
    assert found.fingerprints == {new.sha256}


def test_garbage_inside_a_block_is_skipped(host_keys: dict[str, MadeKey]) -> None:
    key = host_keys["ed25519"]
    text = (
        "-----BEGIN SSH HOST KEY KEYS-----\n"
        "ssh-ed25519 AAAAnotakey root@x\n"
        "random noise\n"
        f"{key.line}\n"
        "-----END SSH HOST KEY KEYS-----\n"
    )
    found = parse_console_host_keys(text)
    assert [k.public_data for k in found.keys] == [key.key.public_data]


def test_verifier_accepts_a_listed_key(host_keys: dict[str, MadeKey]) -> None:
    key = host_keys["ed25519"]
    text = f"-----BEGIN SSH HOST KEY KEYS-----\n{key.line}\n-----END SSH HOST KEY KEYS-----\n"
    verifier = ConsoleOutputVerifier("i-0123456789abcdef0", parse_console_host_keys(text))
    verifier.verify("127.0.0.1", 22, key.key)


def test_verifier_accepts_a_key_listed_only_by_fingerprint(host_keys: dict[str, MadeKey]) -> None:
    key = host_keys["ecdsa"]
    text = (
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
        f"256 {key.sha256} root@host (ECDSA)\n"
        "-----END SSH HOST KEY FINGERPRINTS-----\n"
    )
    verifier = ConsoleOutputVerifier("i-0123456789abcdef0", parse_console_host_keys(text))
    verifier.verify("127.0.0.1", 22, key.key)


def test_verifier_refuses_any_other_key_and_says_why(host_keys: dict[str, MadeKey]) -> None:
    listed, presented = host_keys["ed25519"], host_keys["other"]
    verifier = ConsoleOutputVerifier(
        "i-0123456789abcdef0", parse_console_host_keys(cloud_init_console([listed]))
    )
    with pytest.raises(HostKeyNotVerifiable) as caught:
        verifier.verify("127.0.0.1", 2222, presented.key)
    message = str(caught.value)
    assert "i-0123456789abcdef0" in message
    assert presented.sha256 in message
    assert listed.sha256 in message
    assert "refusing to connect" in message


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "ec2: ",
        "ec2:",
        "[   12.345678] cloud-init[1234]: ",
        "[   12.345678] cloud-init[1234]: ec2: ",
        "<14>Jul 27 10:20:35 ec2: ",
        "<14>Nov  3 09:00:00 cloud-init: ec2: ",
    ],
)
def test_markers_after_a_known_console_prefix_count(
    host_keys: dict[str, MadeKey], prefix: str
) -> None:
    key = host_keys["ed25519"]
    text = "\n".join(
        [
            f"{prefix}-----BEGIN SSH HOST KEY FINGERPRINTS-----",
            f"{prefix}256 {key.sha256} root@ip-10-0-0-5 (ED25519)",
            f"{prefix}-----END SSH HOST KEY FINGERPRINTS-----  ",
            f"{prefix}-----BEGIN SSH HOST KEY KEYS-----",
            f"{prefix}{key.line}",
            f"{prefix}-----END SSH HOST KEY KEYS-----",
        ]
    )
    found = parse_console_host_keys(text)
    assert found.fingerprints == {key.sha256}
    assert [k.public_data for k in found.keys] == [key.key.public_data]


def test_markers_inside_a_later_log_line_are_ignored(host_keys: dict[str, MadeKey]) -> None:
    """A log line that quotes the markers (e.g. a login attempt's user name) injects nothing."""
    genuine, injected = host_keys["ed25519"], host_keys["other"]
    begin, end = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
    fp_begin = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
    fp_end = "-----END SSH HOST KEY FINGERPRINTS-----"
    attack = [
        f"[  300.100000] sshd[999]: Invalid user {begin} from 203.0.113.9 port 4022",
        f"[  300.100001] sshd[999]: Invalid user {injected.line} from 203.0.113.9",
        f"[  300.100002] sshd[999]: Invalid user {end} from 203.0.113.9 port 4022",
        f"login: {fp_begin}",
        f"login: 256 {injected.sha256} evil (ED25519)",
        f"login: {fp_end}",
        f"ec2: x {begin}",
        injected.line,
        f"ec2: {end} x",
        f"{fp_begin}{fp_begin}",
        f"256 {injected.sha256} evil (ED25519)",
        f"{fp_end}{fp_end}",
    ]
    text = cloud_init_console([genuine]) + "\r\n".join(attack) + "\r\n"
    found = parse_console_host_keys(text)
    assert [k.public_data for k in found.keys] == [genuine.key.public_data]
    assert found.fingerprints == {genuine.sha256}
    verifier = ConsoleOutputVerifier("i-0123456789abcdef0", found)
    with pytest.raises(HostKeyNotVerifiable):
        verifier.verify("127.0.0.1", 22, injected.key)


def test_a_block_opened_only_mid_line_is_not_a_block(host_keys: dict[str, MadeKey]) -> None:
    key = host_keys["ed25519"]
    text = (
        "kernel: echo -----BEGIN SSH HOST KEY KEYS-----\n"
        f"{key.line}\n"
        "-----END SSH HOST KEY KEYS-----\n"
    )
    assert parse_console_host_keys(text).empty
