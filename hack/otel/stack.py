"""The observability stack on this machine: collector, Jaeger and Prometheus on loopback ports.

Each binary (hack/otel/build) runs the configuration that k8s/observability ships. The collector
and Jaeger get hack/otel/local/*.yaml laid over it (loopback ports, no cluster); Prometheus, which
cannot merge files, gets a copy whose Kubernetes discovery is replaced by static targets carrying
the labels that discovery would give them, so the shipped relabelling still decides what is
scraped and how it is labelled.

`hack/demo --observability` runs `python -m hack.otel.stack demo -- DEMO-ARGS` from the
repository's root on PYTHONPATH (docs/observability.md); the tests start stacks through
tests/fixtures_otel.py.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import stop

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "k8s/observability"
COLLECTOR_CONFIG = SHIPPED / "collector/config.yaml"
JAEGER_CONFIG = SHIPPED / "jaeger/config.yaml"
JAEGER_UI_CONFIG = SHIPPED / "jaeger/ui.json"
PROMETHEUS_CONFIG = SHIPPED / "prometheus/prometheus.yml"
LOCAL = ROOT / "hack/otel/local"
BUILD = ROOT / "hack/otel/build"
START_TIMEOUT = 60.0
# The ports people and tools expect, used by the demo where they are free.
CONVENTIONAL_PORTS = {
    "otelcol_otlp_grpc": 4317,
    "otelcol_otlp_http": 4318,
    "jaeger_query": 16686,
    "prometheus": 9090,
}


class Binary(Enum):
    """The programs the stack and its tests run, by the variable hack/otel/build prints."""

    OTELCOL = "EC2_TERMINAL_OTELCOL"
    JAEGER = "EC2_TERMINAL_JAEGER"
    PROMETHEUS = "EC2_TERMINAL_PROMETHEUS"
    PROMTOOL = "EC2_TERMINAL_PROMTOOL"
    UPSTREAM_PROMTOOL = "EC2_TERMINAL_UPSTREAM_PROMTOOL"


class StackError(Exception):
    """A binary is missing, or a component did not start."""


def binaries() -> dict[Binary, Path]:
    """Where every binary is (`hack/otel/build --print-env`); StackError names what is missing."""
    out = subprocess.run(
        [str(BUILD), "--print-env"], check=True, capture_output=True, text=True
    ).stdout
    printed = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    paths = {binary: Path(printed[binary.value]) for binary in Binary}
    missing = [f"{b.value}={p}" for b, p in paths.items() if not os.access(p, os.X_OK)]
    if missing:
        raise StackError(f"missing binaries (run hack/otel/build): {', '.join(missing)}")
    return paths


def free_port(preferred: int = 0) -> int:
    """`preferred` when nothing listens there on 127.0.0.1, else a free port."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Ports:
    """The stack's loopback ports; the field names match hack/otel/local/*.yaml's variables."""

    otelcol_otlp_grpc: int
    otelcol_otlp_http: int
    otelcol_health: int
    otelcol_prometheus: int
    otelcol_telemetry: int
    jaeger_otlp_grpc: int
    jaeger_query: int
    jaeger_query_grpc: int
    jaeger_health: int
    jaeger_telemetry: int
    prometheus: int

    @classmethod
    def pick(cls, conventional: bool = False) -> Ports:
        """Free ports; with `conventional`, the usual ones where they are free (for people)."""
        chosen: dict[str, int] = {}
        for f in fields(cls):
            port = free_port(CONVENTIONAL_PORTS.get(f.name, 0) if conventional else 0)
            while port in chosen.values():
                port = free_port()
            chosen[f.name] = port
        return cls(**chosen)

    def env(self) -> dict[str, str]:
        """The variables that hack/otel/local/*.yaml read."""
        return {f.name.upper() + "_PORT": str(getattr(self, f.name)) for f in fields(self)}


def label_name(name: str) -> str:
    """A Kubernetes label or annotation key as Prometheus' discovery spells it in meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


@dataclass(frozen=True)
class PodTarget:
    """What Kubernetes pod discovery would say about one container port of one pod."""

    address: str
    namespace: str
    pod: str
    port_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node: str = "localhost"
    phase: str = "Running"

    def meta_labels(self) -> dict[str, str]:
        """The `__meta_kubernetes_*` labels of this target, as relabel_configs see them."""
        meta = {
            "__meta_kubernetes_namespace": self.namespace,
            "__meta_kubernetes_pod_name": self.pod,
            "__meta_kubernetes_pod_node_name": self.node,
            "__meta_kubernetes_pod_phase": self.phase,
            "__meta_kubernetes_pod_container_port_name": self.port_name,
        }
        for kind, items in (("label", self.labels), ("annotation", self.annotations)):
            for key, value in items.items():
                meta[f"__meta_kubernetes_pod_{kind}_{label_name(key)}"] = value
                meta[f"__meta_kubernetes_pod_{kind}present_{label_name(key)}"] = "true"
        return meta


def annotated_pod(address: str, namespace: str, pod: str, path: str = "/metrics") -> PodTarget:
    """A pod that asks to be scraped the way docs/observability.md tells pods to."""
    port = address.rsplit(":", 1)[1]
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": port}
    annotations["prometheus.io/path"] = path
    return PodTarget(address, namespace, pod, annotations=annotations)


def derive_prometheus_config(
    shipped: Mapping[str, Any],
    targets: Mapping[str, Sequence[PodTarget]],
    self_address: str,
    scrape_interval: str,
) -> dict[str, Any]:
    """The shipped configuration with static targets in place of Kubernetes discovery."""
    config = copy.deepcopy(dict(shipped))
    config["global"] = dict(config.get("global", {}), scrape_interval=scrape_interval)
    config["global"]["scrape_timeout"] = scrape_interval
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    unknown = set(targets) - set(jobs)
    if unknown:
        raise ValueError(f"no scrape job named {sorted(unknown)} in the shipped configuration")
    for name, job in jobs.items():
        if "kubernetes_sd_configs" in job:
            del job["kubernetes_sd_configs"]
            job["static_configs"] = [
                {"targets": [target.address], "labels": target.meta_labels()}
                for target in targets.get(name, [])
            ]
        elif name == "prometheus":
            job["static_configs"] = [{"targets": [self_address]}]
    return config


def collector_targets(ports: Ports) -> list[PodTarget]:
    """The local collector as the collector job discovers the DaemonSet's pods."""
    labels = {"app.kubernetes.io/name": "otel-collector"}
    return [
        PodTarget(
            f"127.0.0.1:{port}", "ec2-terminal-observability", "otel-collector-local", name, labels
        )
        for name, port in (
            ("prom-export", ports.otelcol_prometheus),
            ("telemetry", ports.otelcol_telemetry),
        )
    ]


def jaeger_target(ports: Ports) -> PodTarget:
    """Local Jaeger's own metrics, annotated as jaeger/deployment.yaml annotates its pod."""
    address = f"127.0.0.1:{ports.jaeger_telemetry}"
    return annotated_pod(address, "ec2-terminal-observability", "jaeger-local")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it is true; StackError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError as exc:  # not listening yet
            last = exc
        time.sleep(0.1)
    raise StackError(f"{what}: not ready after {timeout:g}s (last error: {last})")


@dataclass
class Stack:
    """A running local stack: its ports, its processes and their logs."""

    directory: Path
    ports: Ports
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def jaeger_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.jaeger_query}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otelcol_otlp_grpc}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.otelcol_otlp_http}"

    @property
    def span_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.otelcol_prometheus}/metrics"

    def log(self, name: str) -> str:
        """What one component wrote so far."""
        return (self.directory / f"{name}.log").read_text(errors="replace")

    def app_env(self, service_name: str | None = None) -> dict[str, str]:
        """The standard OpenTelemetry variables that point an application at this collector."""
        env = {
            "ENABLE_OTEL": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_grpc_endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_EXPORTER": "otlp",
        }
        if service_name:
            env["OTEL_SERVICE_NAME"] = service_name
        return env

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        """Run one component in its own session (a terminal's Ctrl-C is the caller's to pass)."""
        with (self.directory / f"{name}.log").open("ab") as log_file:
            self.processes[name] = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.directory,
                start_new_session=True,
            )

    def wait_ready(self, name: str, url: str) -> None:
        """Wait until `url` answers 200, failing early if the component exits."""
        process = self.processes[name]

        def ready() -> bool:
            if process.poll() is not None:
                raise StackError(f"{name} exited {process.returncode}")
            return httpx.get(url, timeout=2).status_code == 200

        try:
            wait_until(ready, START_TIMEOUT, name)
        except StackError as exc:
            raise StackError(f"{exc}\n{name}'s log:\n{self.log(name)[-4000:]}") from None

    def stop(self) -> dict[str, int]:
        """Stop every component (SIGTERM, then SIGKILL); their exit codes."""
        return {name: stop(p, timeout=15) for name, p in reversed(list(self.processes.items()))}


def exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP unwinds like an exception, so every process started is stopped."""
    raise SystemExit(128 + signum)


def collector_argv(otelcol: Path, directory: Path, span_file: Path | None) -> list[str]:
    """The collector's command: the shipped file, the local overlay, and maybe a span file."""
    argv = [
        str(otelcol),
        f"--config=file:{COLLECTOR_CONFIG}",
        f"--config=file:{LOCAL / 'collector.yaml'}",
    ]
    if span_file is not None:
        shipped = yaml.safe_load(COLLECTOR_CONFIG.read_text())
        exporters = [*shipped["service"]["pipelines"]["traces"]["exporters"], "file/spans"]
        overlay = {
            "exporters": {"file/spans": {"path": str(span_file), "flush_interval": "100ms"}},
            "service": {"pipelines": {"traces": {"exporters": exporters}}},
        }
        # JSON is YAML: one more file laid over the others.
        (directory / "collector-spans.yaml").write_text(json.dumps(overlay))
        argv.append(f"--config=file:{directory / 'collector-spans.yaml'}")
    return argv


@contextlib.contextmanager
def running_stack(
    directory: Path,
    targets: Sequence[PodTarget] = (),
    span_file: Path | None = None,
    scrape_interval: str = "1s",
    conventional_ports: bool = False,
    paths: Mapping[Binary, Path] | None = None,
) -> Iterator[Stack]:
    """Prometheus, Jaeger and the collector, ready; Prometheus also scrapes `targets`."""
    paths = paths or binaries()
    ports = Ports.pick(conventional_ports)
    stack = Stack(directory, ports)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    # What the Downward API gives the pods (collector/daemonset.yaml, jaeger/deployment.yaml).
    env |= ports.env() | {
        "MY_POD_IP": "127.0.0.1",
        "POD_IP": "127.0.0.1",
        "K8S_NODE_NAME": "localhost",
    }
    env |= {"JAEGER_DATA_DIR": str(directory / "jaeger"), "JAEGER_UI_CONFIG": str(JAEGER_UI_CONFIG)}
    prometheus_config = derive_prometheus_config(
        yaml.safe_load(PROMETHEUS_CONFIG.read_text()),
        {
            "otel-collector": collector_targets(ports),
            "kubernetes-pods": [jaeger_target(ports), *targets],
        },
        f"127.0.0.1:{ports.prometheus}",
        scrape_interval,
    )
    (directory / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config, sort_keys=False))
    try:
        stack.start(
            "prometheus",
            [
                str(paths[Binary.PROMETHEUS]),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{ports.prometheus}",
                "--storage.tsdb.retention.time=1d",
            ],
            env,
        )
        stack.start(
            "jaeger",
            [
                str(paths[Binary.JAEGER]),
                f"--config=file:{JAEGER_CONFIG}",
                f"--config=file:{LOCAL / 'jaeger.yaml'}",
            ],
            env,
        )
        stack.start("otelcol", collector_argv(paths[Binary.OTELCOL], directory, span_file), env)
        stack.wait_ready("prometheus", f"{stack.prometheus_url}/-/ready")
        stack.wait_ready("jaeger", f"http://127.0.0.1:{ports.jaeger_health}/status")
        stack.wait_ready("otelcol", f"http://127.0.0.1:{ports.otelcol_health}/")
        yield stack
    finally:
        stack.stop()


def demo_port(args: Sequence[str]) -> tuple[list[str], int]:
    """The demo's arguments with an explicit web port (default 8000; 0 becomes a free one)."""
    rest: list[str] = []
    port = "8000"
    items = iter(args)
    for arg in items:
        if arg == "--listen-port":
            port = next(items, port)
        elif arg.startswith("--listen-port="):
            port = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if not port.isdigit():
        raise SystemExit(f"--listen-port must be a number, not {port!r}")
    if port == "0":
        port = str(free_port())
    return [*rest, "--listen-port", port], int(port)


def demo(args: argparse.Namespace) -> int:
    """Run `ec2-terminal demo` beside a local stack that scrapes it and receives its OTLP."""
    demo_args, port = demo_port(args.demo_args)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, exit_on_signal)
    with contextlib.ExitStack() as cleanup:
        directory = args.dir or Path(
            cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ec2t-otel-"))
        )
        directory.mkdir(parents=True, exist_ok=True)
        target = annotated_pod(f"127.0.0.1:{port}", "local", "ec2-terminal-demo")
        try:
            stack = cleanup.enter_context(
                running_stack(directory, [target], conventional_ports=True)
            )
        except StackError as exc:
            print(f"observability stack: {exc}", file=sys.stderr)
            return 1
        print(
            f"observability stack (logs in {directory}):\n"
            f"  Jaeger query API and UI  {stack.jaeger_url}/\n"
            f"  Prometheus               {stack.prometheus_url}/\n"
            f"  OTLP gRPC (collector)    {stack.otlp_grpc_endpoint}\n"
            f"  OTLP HTTP (collector)    {stack.otlp_http_endpoint}\n"
            f"  collector span metrics   {stack.span_metrics_url}",
            file=sys.stderr,
            flush=True,
        )
        env = dict(os.environ) | stack.app_env("ec2-terminal-demo")
        cli = Path(sys.executable).parent / "ec2-terminal"
        demo_process = subprocess.Popen([str(cli), "demo", *demo_args], env=env)
        cleanup.callback(stop, demo_process)
        while True:
            try:
                code = demo_process.wait()
            except KeyboardInterrupt:
                # The demo got the same Ctrl-C from the terminal; wait for its own shutdown.
                continue
            # A signal's death as a shell reports it: 128 + the signal's number.
            return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run `ec2-terminal demo` beside the stack")
    demo_parser.add_argument("--dir", type=Path, help="keep configs, data and logs here")
    demo_parser.add_argument(
        "demo_args", nargs=argparse.REMAINDER, help="-- then the demo's arguments"
    )
    args = parser.parse_args(argv)
    if args.demo_args[:1] == ["--"]:
        args.demo_args = args.demo_args[1:]
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
