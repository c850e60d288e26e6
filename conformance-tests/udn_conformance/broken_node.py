"""A deliberately broken Urban Data Node, to show that the suite fails what does not conform.

It stands in front of a real node and forwards everything, byte for byte: Flight SQL as raw
gRPC (every method, metadata and status code passed through) and HTTP. One `--break`
changes one thing on the way:

- `nullability`: every field of every schema the node sends (in `FlightInfo` and at the start
  of each data stream) has its nullability inverted;
- `empty-without-schema`: a data stream without rows ends without its schema message;
- `ignore-parameters`: parameters bound to a prepared statement (`DoPut`) are dropped, so the
  statement runs with the parameters it had before;
- `catalog-without-license`: `GET /catalog` and the descriptions of its resources lack every
  `dct:license` statement, in each RDF format the node offers (the SPARQL endpoint still has
  them, as a node whose catalog and endpoint disagree would);
- `sparql-update-accepted`: a SPARQL Update is answered 200 instead of refused (and not
  forwarded);
- `none`: nothing is broken (the control: the suite must pass through the proxy as it does
  against the node itself).

Run: `python -m udn_conformance.broken_node --flight grpc://127.0.0.1:50051 --http
http://127.0.0.1:8080 --break nullability`; it prints `listening flight=grpc://... http=http://...`
when ready.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import grpc
import pyarrow as pa
import requests

from . import proto

BREAKS = (
    "none",
    "nullability",
    "empty-without-schema",
    "ignore-parameters",
    "catalog-without-license",
    "sparql-update-accepted",
)
FLIGHT = "/arrow.flight.protocol.FlightService/"
# No limit of the proxy's own may decide a test: messages of any size, and headers up to 1 MiB
# (grpcio's default refuses more than 8 KiB, before the node could judge an oversized token).
UNLIMITED = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_metadata_size", 1 << 20),
    ("grpc.absolute_max_metadata_size", 1 << 20),
]
# Request headers that belong to one hop of gRPC, not to the call.
HOP_HEADERS = {"user-agent", "te", "content-type", "grpc-accept-encoding", "grpc-timeout"}
LICENSE = "http://purl.org/dc/terms/license"


# --- Arrow IPC schemas inside Flight messages ---------------------------------------------------


def _encapsulated(flatbuffer: bytes) -> bytes:
    padding = (-len(flatbuffer)) % 8
    return b"\xff\xff\xff\xff" + (len(flatbuffer) + padding).to_bytes(4, "little") + flatbuffer + b"\0" * padding


def _inverted(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [field.with_nullable(not field.nullable) for field in schema], metadata=schema.metadata
    )


def _is_schema_header(header: bytes) -> bool:
    try:
        return pa.ipc.read_message(pa.py_buffer(_encapsulated(header))).type == "schema"
    except (pa.ArrowInvalid, OSError):
        return False


def _invert_header(header: bytes) -> bytes:
    schema = pa.ipc.read_schema(pa.py_buffer(_encapsulated(header)))
    return _inverted(schema).serialize().to_pybytes()[8:]


def _replace(message: bytes, number: int, value: bytes | None) -> bytes:
    fields = proto.decode(message)
    if value is None:
        fields.pop(number, None)
    else:
        fields[number] = [value]
    return proto.encode([(n, v) for n in sorted(fields) for v in fields[n]])


# --- Flight SQL, forwarded as raw gRPC ----------------------------------------------------------


class Forward(grpc.GenericRpcHandler):
    """Every Flight method as a stream of raw messages both ways (gRPC does not distinguish
    unary calls on the wire), passed to the upstream node with the caller's metadata."""

    def __init__(self, upstream: str, breaks: str):
        target = upstream.split("://", 1)[-1]
        self.channel = grpc.insecure_channel(target, options=UNLIMITED)
        self.breaks = breaks

    def service(self, details):
        method = details.method

        def handle(requests_in, context):
            metadata = [
                (k, v) for k, v in context.invocation_metadata()
                if not k.startswith(":") and k not in HOP_HEADERS
            ]  # fmt: skip
            call = self.channel.stream_stream(method)
            if self.breaks == "ignore-parameters" and method == FLIGHT + "DoPut":
                first = next(requests_in, None)
                if first is not None and _is_prepared_query_put(first):
                    for _ in requests_in:  # read the parameters, and drop them
                        pass
                    return
                requests_in = _prepend(first, requests_in)
            responses = call(requests_in, metadata=metadata)
            context.add_callback(responses.cancel)
            try:
                yield from self._mutated(method, responses)
            except grpc.RpcError as err:
                context.abort(err.code(), err.details() or "")

        return grpc.stream_stream_rpc_method_handler(handle)

    def _mutated(self, method: str, responses):
        if self.breaks == "nullability" and method == FLIGHT + "GetFlightInfo":
            for info in responses:
                schema = proto.decode(info).get(1, [b""])[0]
                if schema:
                    inverted = _inverted(pa.ipc.read_schema(pa.py_buffer(schema)))
                    info = _replace(info, 1, inverted.serialize().to_pybytes())
                yield info
        elif self.breaks == "nullability" and method == FLIGHT + "DoGet":
            for data in responses:
                header = proto.decode(data).get(2, [b""])[0]
                if header and _is_schema_header(header):
                    data = _replace(data, 2, _invert_header(header))
                yield data
        elif self.breaks == "empty-without-schema" and method == FLIGHT + "DoGet":
            held, first = None, True
            for data in responses:
                if first:
                    first = False
                    header = proto.decode(data).get(2, [b""])[0]
                    if header and _is_schema_header(header):
                        held = data  # sent only once a batch follows
                        continue
                if held is not None:
                    yield held
                    held = None
                yield data
        else:
            yield from responses


def _prepend(first, rest):
    if first is not None:
        yield first
    yield from rest


def _is_prepared_query_put(message: bytes) -> bool:
    descriptor = proto.decode(message).get(1, [b""])[0]
    command = proto.decode(descriptor).get(2, [b""])[0] if descriptor else b""
    if not command:
        return False
    type_url, _ = proto.unpack_any(command)
    return type_url.endswith(".CommandPreparedStatementQuery")


# --- HTTP ---------------------------------------------------------------------------------------


def _without_license(body: bytes, content_type: str) -> bytes:
    text = body.decode("utf-8")
    if "json" in content_type:
        def strip(value):
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items()
                        if k not in ("license", "dct:license", LICENSE)}
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value

        return json.dumps(strip(json.loads(text))).encode()
    if "xml" in content_type:
        text = re.sub(r"\s*<dct:license\b[^>]*/>", "", text)
        text = re.sub(r"\s*<dct:license\b.*?</dct:license>", "", text, flags=re.S)
        return text.encode()
    if "n-triples" in content_type:
        return "".join(line for line in text.splitlines(True) if f"<{LICENSE}>" not in line).encode()
    # Turtle: one predicate-object pair per line, as nodes write it; `;`/`.` kept in order.
    out: list[str] = []
    for line in text.splitlines(True):
        stripped = line.strip()
        if stripped.startswith(("dct:license ", f"<{LICENSE}> ")):
            if stripped.endswith(".") and out:
                out[-1] = re.sub(r"\s*;\s*$", " .\n", out[-1])
            continue
        out.append(line)
    return "".join(out).encode()


def http_handler(upstream: str, breaks: str, rewrite: tuple[bytes, bytes]):
    """Forwards to `upstream`; `rewrite` replaces the node's Flight URL by the proxy's in every
    body, so that the catalog's endpoint URL leads clients through the proxy."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _forward(self, method: str):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            if breaks == "sparql-update-accepted" and path == "/sparql" and _is_update(
                self.path, self.headers.get("Content-Type", ""), body
            ):
                return self._reply(200, {"Content-Type": "text/plain"}, b"update applied\n")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            r = requests.request(method, upstream + self.path, headers=headers, data=body,
                                 timeout=300, allow_redirects=False)  # fmt: skip
            content = r.content.replace(*rewrite)
            if breaks == "catalog-without-license" and path != "/sparql" and r.status_code == 200 and _is_rdf(r):
                content = _without_license(content, r.headers.get("Content-Type", ""))
            keep = {k: v for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")}
            self._reply(r.status_code, keep, content)

        def _reply(self, status: int, headers: dict, body: bytes):
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            self._forward("GET")

        def do_POST(self):
            self._forward("POST")

        def do_HEAD(self):
            self._forward("HEAD")

        def do_OPTIONS(self):
            self._forward("OPTIONS")

    return Handler


def _is_rdf(r: requests.Response) -> bool:
    kind = r.headers.get("Content-Type", "")
    return any(t in kind for t in ("turtle", "ld+json", "n-triples", "rdf+xml"))


def _is_update(path: str, content_type: str, body: bytes) -> bool:
    if "update" in parse_qs(urlsplit(path).query):
        return True
    if content_type.startswith("application/sparql-update"):
        return True
    return content_type.startswith("application/x-www-form-urlencoded") and "update" in parse_qs(
        body.decode("utf-8", "replace")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flight", required=True, help="the real node's Flight SQL URL")
    parser.add_argument("--http", required=True, help="the real node's HTTP base URL")
    parser.add_argument("--break", dest="breaks", choices=BREAKS, required=True)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=UNLIMITED)
    server.add_generic_rpc_handlers([Forward(args.flight, args.breaks)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    rewrite = (args.flight.encode(), f"grpc://127.0.0.1:{port}".encode())
    web = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(args.http.rstrip("/"), args.breaks, rewrite))
    web.daemon_threads = True
    threading.Thread(target=web.serve_forever, daemon=True).start()
    print(f"listening flight=grpc://127.0.0.1:{port} http=http://127.0.0.1:{web.server_port}", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
