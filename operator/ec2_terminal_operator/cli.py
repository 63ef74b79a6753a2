"""The `ec2-terminal-operator` command: kopf with this operator's handlers and flags."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Sequence

import kopf

from app.errors import ConfigurationError
from app.telemetry import Component, setup_telemetry
from ec2_terminal_operator import footprint
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.handlers import register
from ec2_terminal_operator.metrics import OperatorMetrics, serve_metrics

logger = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9102


def build_parser() -> argparse.ArgumentParser:
    """The command's flags (operator settings also come from EC2_TERMINAL_OPERATOR_*)."""
    parser = argparse.ArgumentParser(
        prog="ec2-terminal-operator", description="Runs the TerminalSession operator."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); the default is --all-namespaces",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL, or '' to disable",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help=f"port of the Prometheus /metrics endpoint (default {DEFAULT_METRICS_PORT}; 0: none)",
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address of the /metrics endpoint"
    )
    parser.add_argument("--session-image", help="default image of session pods")
    parser.add_argument("--resync-seconds", type=float, help="how often each session is checked")
    parser.add_argument(
        "--log-format",
        choices=["json", "plain", "full"],
        default="json",
        help="json (the default) suits log collectors",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    footprint.limit_malloc_arenas()  # before any thread allocates
    args = build_parser().parse_args(argv)
    try:
        cfg = OperatorConfig.from_env()
    except ValueError as exc:
        print(f"ec2-terminal-operator: {exc}", file=sys.stderr)
        return 2
    overrides: dict[str, object] = {}
    if args.session_image:
        overrides["session_image"] = args.session_image
    if args.resync_seconds is not None:
        if args.resync_seconds <= 0:
            print("ec2-terminal-operator: --resync-seconds must be positive", file=sys.stderr)
            return 2
        overrides["resync_seconds"] = args.resync_seconds
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)  # type: ignore[arg-type]
    try:
        telemetry = setup_telemetry(Component.OPERATOR)
    except ConfigurationError as exc:
        print(f"ec2-terminal-operator: {exc}", file=sys.stderr)
        return 2
    if not 0 <= args.metrics_port <= 65535:
        print("ec2-terminal-operator: --metrics-port must be from 0 to 65535", file=sys.stderr)
        return 2
    metrics = OperatorMetrics()
    if args.metrics_port:
        try:
            serve_metrics(metrics, args.metrics_host, args.metrics_port)
        except OSError as exc:
            where = f"{args.metrics_host}:{args.metrics_port}"
            print(f"ec2-terminal-operator: cannot serve metrics on {where}: {exc}", file=sys.stderr)
            return 2
    registry = kopf.OperatorRegistry()
    register(registry, cfg, metrics)
    kopf.configure(
        verbose=args.verbose,
        log_format={
            "json": kopf.LogFormat.JSON,
            "plain": kopf.LogFormat.PLAIN,
            "full": kopf.LogFormat.FULL,
        }[args.log_format],
    )
    namespaces = list(args.namespace)
    logger.info(
        "starting: %s, session image %s, resync %ss",
        ", ".join(namespaces) if namespaces else "all namespaces",
        cfg.session_image,
        cfg.resync_seconds,
    )
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                clusterwide=not namespaces,
                namespaces=namespaces,
                liveness_endpoint=args.liveness or None,
                standalone=True,
            )
        )
    finally:
        telemetry.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
