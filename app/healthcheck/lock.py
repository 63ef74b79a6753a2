"""One check per session at a time: a lock in Redis that expires if its holder dies."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import redis

KEY_PREFIX = "ec2-terminal:health-lock:"

# Take the lock if free, or if the holder is an earlier run of this same task: a task is
# only redelivered after its worker died (or its message timed out), so that run is gone.
_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  local holder = string.match(current, '^(%S+)')
  if holder ~= ARGV[2] then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return false
"""
# Delete only our own lock: after a TTL expiry another check may hold it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclasses.dataclass(frozen=True)
class Held:
    """A lock this process holds; release it when the check ends."""

    key: str
    value: str


class SessionLocks:
    """Per-session locks keyed by namespace/name, holding the task id that owns each."""

    def __init__(self, client: redis.Redis, ttl_seconds: float) -> None:
        self._client = client
        self._ttl_ms = int(ttl_seconds * 1000)
        self._acquire: Any = client.register_script(_ACQUIRE)
        self._release: Any = client.register_script(_RELEASE)

    def acquire(self, namespace: str, name: str, task_id: str) -> Held | str:
        """The lock, or the task id of the check that holds it."""
        key = f"{KEY_PREFIX}{namespace}/{name}"
        value = f"{task_id} {secrets.token_hex(8)}"
        holder = self._acquire(keys=[key], args=[value, task_id, self._ttl_ms])
        if holder is None:
            return Held(key, value)
        raw = holder.decode() if isinstance(holder, bytes) else str(holder)
        return raw.split(" ", 1)[0]

    def release(self, held: Held) -> None:
        """Frees the lock if it is still ours."""
        self._release(keys=[held.key], args=[held.value])
