"""The chart's `helm test` checks, run by its test hooks (templates/tests/) in the project's
image, which has Python and the Kubernetes client (no kubectl needed).

    python3 helm_test.py operator   GET EC2_TERMINAL_TEST_OPERATOR_URL (the operator's /healthz)
    python3 helm_test.py session    create EC2_TERMINAL_TEST_SESSION (a TerminalSession, JSON) in
                                    EC2_TERMINAL_TEST_NAMESPACE, wait until it is Ready, delete it

Exit status 0 when the check passed, 1 with the reason on standard error when not. In a pod it
uses the pod's ServiceAccount; elsewhere KUBECONFIG (tests/test_chart_install.py runs it so).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

GROUP, VERSION, PLURAL = "ec2-terminal.io", "v1alpha1", "terminalsessions"


def log(message: str) -> None:
    """One line of progress, flushed (helm test --logs shows it)."""
    print(message, flush=True)


def poll(check: Callable[[], str | None], timeout: float, interval: float) -> str | None:
    """Calls check until it returns None (done) or the timeout passes; the last reason or None."""
    deadline = time.monotonic() + timeout
    while True:
        reason = check()
        if reason is None or time.monotonic() >= deadline:
            return reason
        time.sleep(interval)


def check_operator(url: str, timeout: float) -> int:
    """The operator answers its liveness endpoint with 200."""

    def answered() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (the chart's URL)
                return None if resp.status == 200 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except OSError as exc:
            return str(exc)

    reason = poll(answered, timeout, 2.0)
    if reason is not None:
        print(f"the operator's liveness endpoint {url} does not answer: {reason}", file=sys.stderr)
        return 1
    log(f"the operator answers {url}")
    return 0


def _api() -> Any:
    from kubernetes import client, config  # the image's; imported here so `operator` needs none

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.CustomObjectsApi()


def _condition(session: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (session.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), {})


def session_state(session: dict[str, Any], expect_reachable: bool) -> str | None:
    """None when the session is Ready (and reachable, if expected); else what it waits for."""
    status = session.get("status") or {}
    phase = status.get("phase", "no status yet")
    ready = _condition(session, "Ready")
    if ready.get("status") != "True":
        return (
            f"phase {phase}: Ready is {ready.get('status', 'unset')} ({ready.get('message', '')})"
        )
    if expect_reachable:
        reachable = _condition(session, "TargetReachable")
        if reachable.get("status") != "True":
            state, message = reachable.get("status", "unset"), reachable.get("message", "")
            return f"Ready, TargetReachable {state}: {message}"
    return None


def check_session(
    namespace: str, manifest: dict[str, Any], timeout: float, expect_reachable: bool
) -> int:
    """A sample session reaches Ready (and TargetReachable), then is deleted."""
    api = _api()
    created = api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    name = created["metadata"]["name"]
    log(f"created TerminalSession {namespace}/{name}")
    try:
        last: dict[str, Any] = created

        def ready() -> str | None:
            nonlocal last
            last = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            phase = (last.get("status") or {}).get("phase")
            if phase in ("Failed", "Expired"):
                return None  # final: no use waiting
            return session_state(last, expect_reachable)

        reason = poll(ready, timeout, 2.0)
        phase = (last.get("status") or {}).get("phase")
        problem = reason or session_state(last, expect_reachable)
        if problem is not None:
            accepted = _condition(last, "Accepted")
            detail = (
                f"; Accepted: {accepted.get('message')}"
                if accepted.get("status") == "False"
                else ""
            )
            what = f"TerminalSession {namespace}/{name}"
            print(f"{what} not ready after {timeout:g}s: {problem}{detail}", file=sys.stderr)
            return 1
        url = (last.get("status") or {}).get("url")
        log(f"TerminalSession {namespace}/{name} is {phase} at {url}")
        return 0
    finally:
        from kubernetes.client.exceptions import ApiException

        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            log(f"deleted TerminalSession {namespace}/{name}")
        except ApiException as exc:
            if exc.status != 404:
                raise


def main(argv: list[str]) -> int:
    """Runs the check named by the first argument."""
    env = os.environ
    timeout = float(env.get("EC2_TERMINAL_TEST_TIMEOUT", "60"))
    if argv[1:] == ["operator"]:
        return check_operator(env["EC2_TERMINAL_TEST_OPERATOR_URL"], timeout)
    if argv[1:] == ["session"]:
        return check_session(
            env["EC2_TERMINAL_TEST_NAMESPACE"],
            json.loads(env["EC2_TERMINAL_TEST_SESSION"]),
            timeout,
            env.get("EC2_TERMINAL_TEST_EXPECT_REACHABLE") == "true",
        )
    print("usage: helm_test.py operator|session", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
