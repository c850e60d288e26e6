"""A test OpenTelemetry collector: an OTLP receiver that keeps what nodes send.

`Receiver` speaks OTLP/HTTP (protobuf): it decodes `POST /v1/traces` and `POST /v1/metrics`
with the OTLP message types of the `opentelemetry-proto` package and answers as the OTLP/HTTP
specification says (200 with an empty response message). `GrpcReceiver` speaks OTLP/gRPC, with
the same package's service definitions on grpcio. Spans are kept flattened, with their
resource's attributes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

SPAN_KIND = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def _value(value: common_pb2.AnyValue):
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _attributes(pairs) -> dict:
    return {kv.key: _value(kv.value) for kv in pairs}


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    attributes: dict
    resource: dict
    status_code: int

    @property
    def node(self) -> str | None:
        return self.resource.get("service.instance.id")


@dataclass
class Receiver:
    """Started with `start()`; `url` is the base URL to give as OTEL_EXPORTER_OTLP_ENDPOINT."""

    spans: list[Span] = field(default_factory=list)
    metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.path == "/v1/traces":
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    receiver._keep_spans(request, body)
                    reply = trace_service_pb2.ExportTraceServiceResponse()
                elif self.path == "/v1/metrics":
                    request = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    with receiver.lock:
                        receiver.metric_requests.append(request)
                        receiver.raw.append(body)
                    reply = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                payload = reply.SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _keep_spans(self, request, body: bytes) -> None:
        spans = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=SPAN_KIND.get(span.kind, str(span.kind)),
                            attributes=_attributes(span.attributes),
                            resource=resource,
                            status_code=span.status.code,
                        )
                    )
        with self.lock:
            self.spans.extend(spans)
            self.raw.append(body)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, predicate, timeout: float = 30.0, what: str = "spans"):
        """Polls until `predicate(self)` is truthy; returns its value."""
        try:
            return poll(lambda: predicate(self), timeout, what)
        except AssertionError as err:
            with self.lock:
                names = sorted({(s.node, s.name) for s in self.spans}, key=str)
            raise AssertionError(f"{err}; spans received: {names}") from None


class GrpcReceiver(Receiver):
    """The OTLP/gRPC trace and metrics services; `url` is `http://127.0.0.1:<port>`."""

    def start(self) -> "GrpcReceiver":
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                receiver._keep_spans(request, request.SerializeToString())
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                with receiver.lock:
                    receiver.metric_requests.append(request)
                    receiver.raw.append(request.SerializeToString())
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.grpc_server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.grpc_server)
        self.port = self.grpc_server.add_insecure_port("127.0.0.1:0")
        self.grpc_server.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.grpc_server.stop(grace=None)


def poll(predicate, timeout: float = 30.0, what: str = "it"):
    """Calls `predicate()` until it returns something truthy, which it returns; fails after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f}s")
        time.sleep(0.1)
