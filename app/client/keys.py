"""Keys typed into the attach client: the `~.` escape, and the keys that end watching."""

from __future__ import annotations

from enum import Enum

ESCAPE = ord("~")
NEWLINES = frozenset(b"\r\n")
# A viewer's keys go nowhere; these end the watching instead: q, Ctrl+C, Ctrl+D.
VIEWER_QUIT = frozenset(b"q\x03\x04")


class Escape(Enum):
    """What the escape sequence asked for."""

    NONE = "none"
    LEAVE = "leave"  # ~.
    SHARE = "share"  # ~s: show the session's read-only Share link
    HELP = "help"  # ~?: list the escapes


ESCAPES = {ord("."): Escape.LEAVE, ord("s"): Escape.SHARE, ord("?"): Escape.HELP}
HELP = "escapes at the start of a line: ~. disconnect, ~s show a read-only Share link, ~~ send ~"


class KeyFilter:
    """Finds the escapes (`~.`, `~s`, `~?`) at the start of a line, as ssh does; passes the rest."""

    # `~~` at the start of a line sends one `~`; a `~` before any other key is sent as typed.

    def __init__(self) -> None:
        self._line_start = True
        self._tilde = False

    def feed(self, data: bytes) -> tuple[bytes, Escape]:
        """The keys to send, and the escape typed, if any (keys after `~.` are dropped)."""
        out = bytearray()
        typed = Escape.NONE
        for byte in data:
            if self._tilde:
                self._tilde = False
                escape = ESCAPES.get(byte)
                if escape is Escape.LEAVE:
                    return bytes(out), escape
                if escape is not None:
                    typed = escape  # the line is still at its start
                    continue
                if byte != ESCAPE:
                    out.append(ESCAPE)
                out.append(byte)
                self._line_start = byte in NEWLINES
            elif self._line_start and byte == ESCAPE:
                self._tilde = True
            else:
                out.append(byte)
                self._line_start = byte in NEWLINES
        return bytes(out), typed

    @staticmethod
    def quits_viewer(data: bytes) -> bool:
        """Whether a viewer typed a key that ends watching."""
        return any(byte in VIEWER_QUIT for byte in data)
