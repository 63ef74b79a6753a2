"""`ec2-terminal serve`: the session server's flags, the settings they make, and the run."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from app.auth.accesskey import token_from_file
from app.cli.options import choice, env_name, option, switch
from app.http.application import create_app
from app.http.server import DrainingServer, uvicorn_config
from app.settings import (
    AccessMethod,
    AddressKind,
    HostKeyPolicy,
    Limits,
    LogLevel,
    Settings,
    Target,
)
from app.telemetry import Component, PodIdentity, setup_telemetry

log = logging.getLogger(__name__)

# The prototype's key location keeps working.
LEGACY_KEY_FILES = (Path("terminal/aws.pem"), Path("aws.pem"))


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    lim = Limits()
    group = parser.add_argument_group("target")
    option(group, "--host", "SSH host name or address of the target")
    option(group, "--port", "SSH port of the target", int, 22)
    option(group, "--user", "login user on the target", str, "ec2-user")
    option(group, "--instance-id", "EC2 instance id instead of --host")
    option(group, "--region", "AWS region of the instance")
    option(group, "--endpoint-url", "AWS API endpoint override")
    choice(group, "--address", "which instance address to use", AddressKind.PUBLIC)
    choice(group, "--access-method", "how to log in", AccessMethod.SSH_KEY)
    option(group, "--key-file", "private key file for ssh-key access", Path)
    choice(
        group,
        "--host-key-policy",
        "how to verify the target's host key (accept-new trusts a first-seen key)",
        HostKeyPolicy.KNOWN_HOSTS,
    )
    option(group, "--known-hosts", "known_hosts file (default ~/.ssh/known_hosts)", Path)
    option(group, "--host-key-fingerprint", "pinned host key, SHA256:...")
    limits = parser.add_argument_group("limits (seconds and bytes)")
    for name, help in (
        ("connect-timeout", "SSH connect timeout"),
        ("hello-timeout", "close sockets that send no HELLO within this time"),
        ("idle-timeout", "end a session after this long without input"),
        ("max-duration", "end a session after this long"),
        ("resume-grace", "keep a session this long after its socket drops"),
        ("keepalive-interval", "SSH keepalive toward the target (3 missed end the session)"),
        ("header-timeout", "close connections whose request headers take longer than this"),
        ("ws-ping-interval", "seconds between WebSocket keepalive pings"),
        ("ws-ping-timeout", "cut a WebSocket whose keepalive ping is unanswered this long"),
    ):
        option(limits, f"--{name}", help, float, getattr(lim, name.replace("-", "_")))
    for name, help in (
        ("max-sessions", "concurrent sessions"),
        ("flow-window", "unacknowledged output bytes before the target is paused"),
        ("replay-buffer", "output bytes kept for resume"),
        ("input-rate", "keyboard input bytes per second"),
        ("max-connections", "open connections, HTTP and WebSocket; more are answered 503"),
        ("max-viewers", "read-only viewers per session (0: sharing off)"),
        ("max-upload-bytes", "largest file an upload may write (0: uploads off)"),
        ("max-download-bytes", "largest file a download may send (0: downloads off)"),
        ("max-recording-bytes", "size limit of one recording; it then ends with a marker"),
    ):
        option(limits, f"--{name}", help, int, getattr(lim, name.replace("-", "_")))


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    option(parser, "--listen-host", "address to listen on", str, "127.0.0.1")
    option(parser, "--listen-port", "port to listen on", int, 8000)
    option(parser, "--base-path", "URL prefix of every page, with slashes at both ends", str, "/")
    option(parser, "--token-file", "file holding the access token (re-read when it changes)", Path)
    option(parser, "--token-check-interval", "seconds between checks of the token file", float, 5.0)
    option(parser, "--link-ttl", "longest accepted lifetime of a link token (s)", float, 300.0)
    option(parser, "--login-ttl", "lifetime of a browser login (s)", float, 28800.0)
    option(parser, "--allowed-origins", "comma-separated extra origins allowed", str, "")
    option(
        parser,
        "--allowed-hosts",
        "comma-separated host names (or *.domain) answered besides IP addresses and localhost",
        str,
        "",
    )
    option(parser, "--recordings-dir", "directory for asciicast recordings", Path)
    switch(
        parser,
        "--clipboard-osc52",
        "let programs on the target set the browser's clipboard (OSC 52; writes only, never reads)",
    )
    option(
        parser,
        "--forwarded-allow-ips",
        "comma-separated addresses or networks (or *) of proxies trusted for X-Forwarded-*",
        str,
        "127.0.0.1",
    )
    choice(parser, "--log-level", "log level", LogLevel.INFO)
    pod = parser.add_argument_group("session pod (set by the operator)")
    option(pod, "--pod-name", "own pod name, to report activity to the operator")
    option(pod, "--pod-namespace", "own pod namespace")
    option(pod, "--pod-uid", "own pod uid, the holder of the activity Lease")
    option(pod, "--node-name", "own node name, a resource attribute of traces")
    option(pod, "--activity-lease", "name of the Lease to report activity on")
    option(pod, "--activity-interval", "seconds between activity reports", float, 10.0)
    option(
        pod,
        "--service-account-dir",
        "the mounted ServiceAccount (token, ca.crt) used for activity reports "
        "(default: where Kubernetes mounts it)",
        Path,
    )


def _read_token(args: argparse.Namespace) -> str | None:
    """The access token from the environment, or None; a token file must be readable."""
    if args.token_file is not None:
        token_from_file(args.token_file)  # refused now if unreadable; the server re-reads it
        return None
    return os.environ.get(env_name("token")) or None


def _key_file(args: argparse.Namespace) -> Path | None:
    if args.key_file is not None:
        return Path(args.key_file)
    return next((p for p in LEGACY_KEY_FILES if p.is_file()), None)


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build the frozen settings from parsed flags."""
    target = Target(
        host=args.host,
        port=args.port,
        user=args.user,
        instance_id=args.instance_id,
        region=args.region,
        endpoint_url=args.endpoint_url,
        address=AddressKind(args.address),
        access_method=AccessMethod(args.access_method),
        key_file=_key_file(args),
        host_key_policy=HostKeyPolicy(args.host_key_policy),
        known_hosts=args.known_hosts,
        host_key_fingerprint=args.host_key_fingerprint,
    )
    # Every Limits field has a flag of its name (see _add_target_options): they copy across.
    limits = Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits)})
    origins = _comma_list(args.allowed_origins)
    return Settings(
        target=target,
        limits=limits,
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        base_path=args.base_path,
        token=_read_token(args),
        token_file=args.token_file,
        token_check_interval=args.token_check_interval,
        link_ttl=args.link_ttl,
        login_ttl=args.login_ttl,
        allowed_origins=origins,
        allowed_hosts=tuple(h.lower() for h in _comma_list(args.allowed_hosts)),
        recordings_dir=args.recordings_dir,
        clipboard_osc52=args.clipboard_osc52,
        forwarded_allow_ips=_comma_list(args.forwarded_allow_ips),
        log_level=LogLevel(args.log_level),
        pod_name=args.pod_name,
        pod_namespace=args.pod_namespace,
        pod_uid=args.pod_uid,
        activity_lease=args.activity_lease,
        activity_interval=args.activity_interval,
        service_account_dir=args.service_account_dir,
    )


def serve(args: argparse.Namespace) -> int:
    """Run the session server until SIGTERM."""
    settings = settings_from_args(args)
    problem = settings.ready_problem
    if problem:
        log.warning("not ready: %s (/readyz answers 503 until fixed)", problem)
    identity = PodIdentity(args.pod_name, args.pod_namespace, args.pod_uid, args.node_name)
    telemetry = setup_telemetry(Component.SESSION_SERVER, identity=identity)
    try:
        app = create_app(settings, telemetry=telemetry)
        DrainingServer(uvicorn_config(app, settings), app).run()
    finally:
        telemetry.shutdown()
    return 0


def add_serve_parser(commands: Any) -> None:
    """Register the `serve` subcommand."""
    parser = commands.add_parser("serve", help="run the session server")
    _add_target_options(parser)
    _add_server_options(parser)
    parser.set_defaults(func=serve)
