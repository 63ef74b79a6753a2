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
    LEAVE = "leave"


class KeyFilter:
    """Finds `~.` at the start of a line (as ssh does) and passes every other key on.

    `~~` at the start of a line sends one `~`; a `~` followed by anything else is sent as typed.
    """

    def __init__(self) -> None:
        self._line_start = True
        self._tilde = False

    def feed(self, data: bytes) -> tuple[bytes, Escape]:
        """The keys to send, and whether the escape was typed (keys after it are dropped)."""
        out = bytearray()
        for byte in data:
            if self._tilde:
                self._tilde = False
                if byte == ord("."):
                    return bytes(out), Escape.LEAVE
                if byte != ESCAPE:
                    out.append(ESCAPE)
                out.append(byte)
                self._line_start = byte in NEWLINES
            elif self._line_start and byte == ESCAPE:
                self._tilde = True
            else:
                out.append(byte)
                self._line_start = byte in NEWLINES
        return bytes(out), Escape.NONE

    @staticmethod
    def quits_viewer(data: bytes) -> bool:
        """Whether a viewer typed a key that ends watching."""
        return any(byte in VIEWER_QUIT for byte in data)
