"""What kopf keeps of a session: its finalizer and the delete handler's progress, no diff-base."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no last-handled state: every session's essence is empty, so it never changes.

    kopf diffs a body against the state it last handled only for on.create, on.update and
    on.resume handlers (and field filters); the operator has none of them (a session's loop
    reads the live body instead). kopf's annotation storage cost each session a PATCH on its
    way to Ready and a copy of its spec in memory, and every watch event a deep copy of the
    body to diff.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """The empty essence."""
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """The empty essence, as if it had been stored (None would mean a new object)."""
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Stores nothing."""
