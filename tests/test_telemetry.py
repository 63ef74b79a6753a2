"""app/telemetry: its settings, `traced`, the redaction and naming of HTTP spans, the Redis
enrichment against a real Redis, AWS calls (moto) as spans in a real collector, and, with
tracing off, no OpenTelemetry at all, nothing exported to a real collector and nothing failing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from app.errors import ConfigurationError
from app.telemetry import Component, current_trace_id, traced
from app.telemetry.asgi import redact_query, redacted, route_name
from app.telemetry.redis import RedisHooks, key_of, library_prefixes
from app.telemetry.sampling import InTracesOnly
from app.telemetry.settings import (
    ExportProtocol,
    PodIdentity,
    SamplerName,
    TelemetrySettings,
    tracing_wanted,
)
from hack.otel.stack import Ports
from tests.fixtures_healthcheck import RedisServer, worker_env
from tests.fixtures_moto import MotoAws, console_with_host_keys
from tests.fixtures_otel import (
    SPAN_KIND_CLIENT,
    STATUS_ERROR,
    SpanRecord,
    StackFactory,
    read_spans,
)
from tests.fixtures_server import RunningServer, ServerFactory, start_server
from tests.fixtures_sshd import Sshd, keygen
from tests.support import CLI, free_port, poll, stop
from tests.wsclient import connected, open_client

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"ENABLE_OTEL": "1"}, True),
        ({"ENABLE_OTEL": "True"}, True),
        ({"ENABLE_OTEL": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"ENABLE_OTEL": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"ENABLE_OTEL": "true", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_tracing_is_on_with_enable_otel_or_an_endpoint(env: dict[str, str], wanted: bool) -> None:
    assert tracing_wanted(env) is wanted
    settings = TelemetrySettings.from_env(Component.WORKER, env)
    assert settings.enabled is wanted


def test_settings_read_the_standard_variables() -> None:
    env = {
        "ENABLE_OTEL": "yes",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "EC2_TERMINAL_POD_NAME": "web",
        "EC2_TERMINAL_POD_NAMESPACE": "team-a",
        "EC2_TERMINAL_NODE_NAME": "node-1",
    }
    s = TelemetrySettings.from_env(Component.OPERATOR, env)
    assert (s.protocol, s.sampler, s.ratio, s.endpoint) == (
        ExportProtocol.GRPC,
        SamplerName.PARENT_RATIO,
        0.25,
        None,
    )
    assert s.identity.attributes() == {
        "k8s.pod.name": "web",
        "k8s.namespace.name": "team-a",
        "k8s.node.name": "node-1",
    }
    # The traces protocol wins over the generic one; http/protobuf is the default.
    both = env | {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}
    assert TelemetrySettings.from_env(Component.OPERATOR, both).protocol is ExportProtocol.HTTP
    assert TelemetrySettings.from_env(Component.DEMO, {"ENABLE_OTEL": "1"}).protocol is (
        ExportProtocol.HTTP
    )
    # `serve`'s flags name the pod; they win over the environment.
    flags = PodIdentity(pod_name="flag")
    assert TelemetrySettings.from_env(Component.DEMO, env, flags).identity == flags


def test_the_prototypes_endpoint_with_its_path_is_kept_whole() -> None:
    env = {"ENABLE_OTEL": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318/v1/traces"}
    assert (
        TelemetrySettings.from_env(Component.DEMO, env).endpoint
        == env["OTEL_EXPORTER_OTLP_ENDPOINT"]
    )
    # Without the path the exporter appends it itself.
    plain = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}
    assert TelemetrySettings.from_env(Component.DEMO, plain).endpoint is None


def test_a_logged_endpoint_has_no_credentials() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://user:pw@otel.example:4318/v1/traces"}
    shown = TelemetrySettings.from_env(Component.DEMO, env).shown_endpoint
    assert shown == "https://otel.example:4318/v1/traces"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ENABLE_OTEL": "maybe"}, "ENABLE_OTEL must be true or false, not 'maybe'"),
        ({"ENABLE_OTEL": "1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "grpc, http/protobuf"),
        ({"ENABLE_OTEL": "1", "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"ENABLE_OTEL": "1", "OTEL_TRACES_EXPORTER": "zipkin"}, "otlp, console, none"),
        (
            {
                "ENABLE_OTEL": "1",
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "2",
            },
            "from 0 to 1, not '2'",
        ),
    ],
)
def test_bad_values_are_refused_with_their_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        TelemetrySettings.from_env(Component.WORKER, env)


def run_with(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A command run to completion with exactly `env` (and /usr/bin on PATH)."""
    return subprocess.run(
        argv,
        env={"PATH": "/usr/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_setting_stops_a_command_with_one_line() -> None:
    bad = {"ENABLE_OTEL": "maybe"}
    # `link` does not trace: only the processes that do read the settings.
    done = run_with([CLI, "link", "--url", "http://x/"], bad | {"EC2_TERMINAL_TOKEN": "t" * 32})
    assert done.returncode == 0, done.stderr
    served = run_with([CLI, "health-check"], bad)
    assert served.returncode == 2
    assert served.stderr == "ec2-terminal: ENABLE_OTEL must be true or false, not 'maybe'\n"
    operator = run_with([str(Path(CLI).parent / "ec2-terminal-operator"), "--metrics-port=0"], bad)
    assert operator.returncode == 2
    assert operator.stderr.endswith("ENABLE_OTEL must be true or false, not 'maybe'\n")


# ---------------------------------------------------------------- off: nothing loaded at all

SERVER_AND_OPERATOR = """
import sys
from app.cli.main import build_parser
from app.http.application import create_app
from app.settings import Settings, Target
from app.telemetry import Component, setup_telemetry, traced, current_trace_id, span
from ec2_terminal_operator import cli, handlers, runner
from ec2_terminal_operator.metrics import OperatorMetrics

for component in Component:
    telemetry = setup_telemetry(component)
    assert not telemetry.enabled
    telemetry.shutdown()
create_app(Settings(target=Target(host="h")), telemetry=setup_telemetry(Component.SESSION_SERVER))

@traced
class Probe:
    def run(self):
        return 1

assert Probe().run() == 1 and current_trace_id() is None
with span("nothing"):
    pass
with OperatorMetrics().reconcile_pass("ns", "name"):
    pass
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
# redis-py 8 imports OpenTelemetry's metrics SDK by itself when it is installed (its own,
# opt-in, metrics): the worker and the health-check command load that much whatever we do.
WORKER = """
import sys
from app.healthcheck import cli, worker
from app.telemetry import Component, setup_telemetry, current_trace_id

worker.trace_in_children(setup_telemetry(Component.WORKER))
assert current_trace_id() is None
ours = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
print(sorted(m for m in sys.modules if m.startswith(ours)))
"""


@pytest.mark.parametrize("script", [SERVER_AND_OPERATOR, WORKER], ids=["server-operator", "worker"])
def test_with_tracing_off_opentelemetry_is_not_loaded(script: str) -> None:
    env = {"PATH": "/usr/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


# ---------------------------------------------------------------- off: nothing exported


async def one_command(server: RunningServer) -> None:
    client = await connected(server)
    await client.resize(90, 30)
    await client.send_input("echo quiet-$((2*21))\r")
    await client.until_text("quiet-42")
    await client.send_input("exit\r")
    await client.until_closed()


def test_with_tracing_off_nothing_reaches_the_collector_and_nothing_fails(
    otel_stack_factory: StackFactory,
    sshd: Sshd,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    ports = Ports.pick()
    # The collector's address is there, as the chart sets it, but the switch says no.
    off = {k: v for k, v in ports.app_env().items() if k != "ENABLE_OTEL"} | {
        "ENABLE_OTEL": "false"
    }
    span_file = tmp_path / "spans.jsonl"
    stack = otel_stack_factory(span_file=span_file, ports=ports)
    (tmp_path / "server").mkdir()
    server = start_server(tmp_path / "server", sshd, env=off)
    env = worker_env(
        redis_server,
        tmp_path,
        {
            "EC2_TERMINAL_SERVER_URL": server.origin,
            "EC2_TERMINAL_HEALTH_INTERVAL": "1",
            "EC2_TERMINAL_HOST": sshd.host,
            "EC2_TERMINAL_PORT": str(sshd.port),
            "EC2_TERMINAL_WORKER_LISTEN_PORT": str(free_port()),
            **off,
        },
    )
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [CLI, "worker", "--beat"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        asyncio.run(one_command(server))
        poll(
            lambda: "server http" in (tmp_path / "worker.log").read_text(),
            timeout=60,
            what="a beat check of the server",
        )
        # A span sent now arrives after anything the server or worker could have sent.
        marker = send_marker(stack.app_env())
        poll(
            lambda: span_file.exists() and marker in span_file.read_text(),
            timeout=30,
            what="the marker span in the collector's file",
        )
    finally:
        stop(worker)
        assert server.stop() == 0
    services = {s.service for s in read_spans(span_file)}
    assert services == {"marker"}
    assert "Traceback" not in server.log() + (tmp_path / "worker.log").read_text()


def send_marker(otel: dict[str, str]) -> str:
    """One span sent with the SDK to the collector; its trace id."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource

    provider = TracerProvider(resource=Resource.create({"service.name": "marker"}))
    endpoint = otel["OTEL_EXPORTER_OTLP_ENDPOINT"]
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint, insecure=True)))
    with provider.get_tracer(__name__).start_as_current_span("marker") as marker:
        pass
    provider.shutdown()
    return format(marker.get_span_context().trace_id, "032x")


def test_with_the_collector_down_the_server_works_and_stops(
    server_factory: Any, sshd: Sshd
) -> None:
    ports = Ports.pick()  # nothing listens there
    server = server_factory(sshd, env=ports.app_env("ec2-terminal-session"))
    asyncio.run(one_command(server))
    assert server.stop() == 0


async def refused(server: RunningServer) -> str | None:
    """Opens a session the target refuses; the ERROR frame's code."""
    client = await open_client(server.base_url, server.token)
    await client.hello()
    await client.until_closed(timeout=30)
    return None if client.error is None else str(client.error["code"])


def test_a_refused_login_fails_its_authenticate_span_inside_the_connect(
    otel_stack_factory: StackFactory, server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    span_file = tmp_path / "spans.jsonl"
    stack = otel_stack_factory(span_file=span_file)
    stranger = tmp_path / "stranger"
    keygen(stranger)
    server = server_factory(sshd, env=stack.app_env("ec2-terminal-session"), key_file=str(stranger))
    assert asyncio.run(refused(server)) == "auth_failed"

    def connects() -> list[SpanRecord]:
        spans = read_spans(span_file)
        return spans if {"ssh.connect", "ssh.authenticate"} <= {s.name for s in spans} else []

    spans = {s.name: s for s in poll(connects, timeout=60, what="the connect's spans")}
    connect, auth = spans["ssh.connect"], spans["ssh.authenticate"]
    assert auth.parent_id == connect.span_id
    assert (connect.status, auth.status) == (STATUS_ERROR, STATUS_ERROR)
    assert auth.attributes["ec2_terminal.ssh.auth_method"] == "publickey"
    assert [name for name, _ in auth.events] == ["exception"]
    assert connect.attributes["ec2_terminal.ssh.user"] == sshd.user
    assert spans["WebSocket /ws"].events[-1][1]["code"] == "auth_failed"


# ---------------------------------------------------------------- traced, in this process


class Recorder(SpanExporter):
    """Keeps the spans ended while a test records."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.recording:
            self.spans.extend(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture(scope="session")
def recorder_installed() -> Recorder:
    """This pytest process's tracer provider (set once; other tests' spans are dropped)."""
    recorder = Recorder()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    trace.set_tracer_provider(provider)
    assert trace.get_tracer_provider() is provider, "another tracer provider was set first"
    return recorder


@pytest.fixture
def recorder(recorder_installed: Recorder) -> Iterator[Recorder]:
    recorder_installed.spans.clear()
    recorder_installed.recording = True
    try:
        yield recorder_installed
    finally:
        recorder_installed.recording = False
        recorder_installed.spans.clear()


@traced
def add(a: int, b: int) -> int:
    return a + b


@traced("custom.name")
async def fail_later() -> None:
    await asyncio.sleep(0)
    raise ValueError("no good")


@traced
class Service:
    def public(self) -> str | None:
        return current_trace_id()

    async def public_async(self) -> int:
        return self._private()

    def _private(self) -> int:
        return 7

    @staticmethod
    def static() -> int:
        return 1

    @classmethod
    def klass(cls) -> str:
        return cls.__name__

    @property
    def prop(self) -> int:
        return 3


def test_traced_names_spans_and_records_failures(recorder: Recorder) -> None:
    assert add(2, 3) == 5
    with pytest.raises(ValueError, match="no good"):
        asyncio.run(fail_later())
    (ok, failed) = recorder.spans
    assert ok.name == "add"
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.name == "custom.name"
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert failed.events[0].attributes is not None
    assert failed.events[0].attributes["exception.type"] == "ValueError"


def test_traced_classes_trace_their_public_methods_only(recorder: Recorder) -> None:
    service = Service()
    trace_id = service.public()
    assert asyncio.run(service.public_async()) == 7
    assert (Service.static(), Service.klass(), service.prop) == (1, "Service", 3)
    names = [s.name for s in recorder.spans]
    assert names == ["Service.public", "Service.public_async", "Service.static", "Service.klass"]
    # Inside a span, the current trace id is that span's.
    assert trace_id == format(recorder.spans[0].context.trace_id, "032x")
    assert current_trace_id() is None


# ---------------------------------------------------------------- sampling


def test_client_spans_are_kept_only_inside_a_trace() -> None:
    sampler = InTracesOnly(ALWAYS_ON)
    alone = sampler.should_sample(None, 1, "LLEN", SpanKind.CLIENT)
    assert alone.decision is Decision.DROP
    assert sampler.should_sample(None, 1, "health-check").decision is Decision.RECORD_AND_SAMPLE
    provider = TracerProvider(sampler=sampler)
    with provider.get_tracer(__name__).start_as_current_span("check") as parent:
        inside = sampler.should_sample(None, 1, "LLEN", SpanKind.CLIENT)
        assert parent.is_recording()
    assert inside.decision is Decision.RECORD_AND_SAMPLE


# ---------------------------------------------------------------- HTTP span names and redaction


def test_query_values_never_reach_a_span() -> None:
    assert redact_query("token=abc&x=1&bare") == "token=REDACTED&x=REDACTED&REDACTED"
    assert redacted("http.url", "http://h/t/?token=abc") == "http://h/t/?token=REDACTED"
    assert redacted("url.query", "token=abc") == "token=REDACTED"
    assert redacted("http.target", "/ws") == "/ws"
    assert redacted("http.status_code", 200) == 200


def test_spans_are_named_after_the_route_without_the_base_path() -> None:
    async def endpoint(*_: Any) -> None:
        """Never called."""

    base = "/t/team-a/web/"
    app = Starlette(
        routes=[
            Route("/healthz", endpoint),
            Route(base, endpoint),
            Route(base + "recordings/{name}", endpoint),
            Route(base + "login", endpoint, methods=["POST"]),
            Route(base.rstrip("/"), endpoint),
            WebSocketRoute(base + "ws", endpoint),
            Mount(base + "static", routes=[]),
        ]
    )

    def name(path: str, kind: str = "http", method: str = "GET") -> str | None:
        scope = {"type": kind, "path": path, "method": method, "app": app, "root_path": ""}
        return route_name(scope, base)

    assert name("/healthz") == "/healthz"
    assert name(base) == "/"
    assert name(base.rstrip("/")) == "/"
    assert name(base + "recordings/20250101T000000Z-x.cast") == "/recordings/{name}"
    assert name(base + "login", method="POST") == "/login"
    assert name(base + "ws", kind="websocket") == "/ws"
    assert name(base + "static/app.js") == "/static/{path}"
    assert name("/wp-admin.php") is None


# ---------------------------------------------------------------- Redis, for real


def test_redis_spans_name_the_command_key_and_caller_never_a_value_or_password(
    redis_server: RedisServer,
) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    recorder = Recorder()
    recorder.recording = True
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(recorder))
    client = redis_server.client()
    hooks = RedisHooks(library_prefixes())
    RedisInstrumentor.instrument_client(
        client, tracer_provider=provider, request_hook=hooks.request, response_hook=hooks.response
    )
    try:
        client.set("greeting", "secret-value")
        client.execute_command("AUTH", redis_server.password)  # type: ignore[no-untyped-call]
        client.eval("return redis.call('GET', KEYS[1])", 1, "greeting")
        with client.pipeline() as pipe:
            pipe.llen("queue")
            pipe.get("greeting")
            pipe.execute()
    finally:
        RedisInstrumentor.uninstrument_client(client)
    spans = {s.name: s for s in recorder.spans}
    assert set(spans) >= {"SET", "AUTH", "EVAL"}
    this_function = sys._getframe().f_code
    for span in recorder.spans:
        attributes = dict(span.attributes or {})
        text = repr(attributes)
        assert "secret-value" not in text
        assert redis_server.password not in text
        assert attributes["code.function"] == this_function.co_qualname
        assert attributes["code.filepath"] == __file__
        assert attributes["db.system"] == "redis"
    put = dict(spans["SET"].attributes or {})
    assert (put["db.statement"], put["db.redis.key"], put["db.operation"]) == (
        "SET ? ?",
        "greeting",
        "SET",
    )
    assert "db.redis.key" not in dict(spans["AUTH"].attributes or {})
    assert dict(spans["EVAL"].attributes or {})["db.redis.key"] == "greeting"


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("GET", "k"), "k"),
        ((b"LPUSH", b"queue", b"x"), "queue"),
        (("AUTH", "user", "pw"), None),
        (("HELLO", "3", "AUTH", "user", "pw"), None),
        (("EVALSHA", "abc", "0"), None),
        (("EVALSHA", "abc", "2", "k1", "k2", "v"), "k1"),
        (("PING",), None),
        ((), None),
    ],
)
def test_the_key_of_a_command(args: tuple[Any, ...], key: str | None) -> None:
    assert key_of(args) == key


# ---------------------------------------------------------------- AWS, for real


def test_aws_calls_are_spans_of_the_connect_that_made_them(
    otel_stack_factory: StackFactory,
    moto_aws: MotoAws,
    instance_connect_sshd: Sshd,
    server_factory: ServerFactory,
    tmp_path: Path,
) -> None:
    span_file = tmp_path / "spans.jsonl"
    stack = otel_stack_factory(span_file=span_file)
    sshd = instance_connect_sshd
    instance_id = moto_aws.run_instance(public_ip=sshd.host)
    moto_aws.consoles[instance_id] = console_with_host_keys([sshd.host_public_key])
    server = server_factory(
        None,
        env=moto_aws.env() | stack.app_env("ec2-terminal-session"),
        instance_id=instance_id,
        region=moto_aws.region,
        endpoint_url=moto_aws.endpoint_url,
        port=sshd.port,
        user=sshd.user,
        access_method="instance-connect",
        host_key_policy="console-output",
    )
    asyncio.run(one_command(server))
    wanted = {"DescribeInstances", "GetConsoleOutput", "SendSSHPublicKey"}

    def aws_spans() -> list[SpanRecord]:
        spans = [s for s in read_spans(span_file) if s.attributes.get("rpc.system") == "aws-api"]
        return spans if wanted <= {s.attributes["rpc.method"] for s in spans} else []

    calls = poll(aws_spans, timeout=60, what=f"botocore spans of {sorted(wanted)}")
    connects = {s.span_id: s for s in read_spans(span_file) if s.name == "ssh.connect"}
    for call in calls:
        # Calls made while connecting belong to that connect; background refreshes are dropped.
        assert call.parent_id in connects, (call.name, call.parent_id)
        assert call.kind == SPAN_KIND_CLIENT
        assert call.attributes["cloud.region"] == moto_aws.region
        assert call.attributes["http.status_code"] == 200
        assert call.service == "ec2-terminal-session"
    names = {s.name for s in calls}
    assert {"EC2.DescribeInstances", "EC2 Instance Connect.SendSSHPublicKey"} <= names, names
    assert "PRIVATE KEY" not in span_file.read_text()
