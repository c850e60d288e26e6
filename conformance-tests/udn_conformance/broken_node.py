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
- `masked-column-leak`: a statement with `SELECT *` on a dataset with column masks runs as an
  identity the masks do not apply to (a node whose masks hold except through `SELECT *`);
- `group-below-k`: a statement with `GROUP BY` on an aggregate-only dataset runs as an identity
  with raw access (a node that releases groups smaller than *k*);
- `partial-answers`: a data stream the node ends with an error (a federated query whose peer
  failed part-way) ends without it, the rows sent until then being the whole answer;
- `none`: nothing is broken (the control: the suite must pass through the proxy as it does
  against the node itself).

Two ways to run it:

- In front of a node someone started: `python -m udn_conformance.broken_node --flight
  grpc://127.0.0.1:50051 --http http://127.0.0.1:8080 --break nullability` prints `listening
  flight=grpc://... http=http://...` when ready.
- As the node command of a run that starts its own nodes (`udn-conformance run --node-command`):
  `python -m udn_conformance.broken_node --wrap path/to/polder --break group-below-k --
  serve ...` starts the real node with those arguments, puts the proxy in front of it and
  prints the node's listening line with the proxy's addresses; other subcommands run the real
  binary unchanged. `masked-column-leak` and `group-below-k` need the identity they switch to:
  the wrapper adds a key of its own to the node's `--jwks` and a first rule for it (raw, no
  masks) to the datasets of its `--policy` that the break concerns; the proxy sends that
  identity's token instead of the caller's for the statements above (and for the tickets they
  return).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import tomllib
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
import pyarrow as pa
import requests

from . import proto, tokens
from .node import LISTENING

BREAKS = (
    "none",
    "nullability",
    "empty-without-schema",
    "ignore-parameters",
    "catalog-without-license",
    "sparql-update-accepted",
    "masked-column-leak",
    "group-below-k",
    "partial-answers",
)
# Breaks that send some statements as another identity (`Bypass`).
BYPASS_BREAKS = {
    "masked-column-leak": re.compile(r"\bselect\s+\*", re.I),
    "group-below-k": re.compile(r"\bgroup\s+by\b", re.I),
}
BYPASS_SUBJECT = "udn-broken-node"
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


class Bypass:
    """The identity `masked-column-leak` and `group-below-k` switch to, and which calls get it:
    those that carry a statement matching the break's pattern and naming one of `datasets`
    (`GetFlightInfo` of a statement, `CreatePreparedStatement`), and those that carry what such a
    call returned (the prepared statement's handle, the tickets)."""

    def __init__(self, breaks: str, signer: tokens.Signer, audience: str, datasets: set[str]):
        self.pattern = BYPASS_BREAKS[breaks]
        self.signer = signer
        self.audience = audience
        self.datasets = [re.compile(rf"\b{re.escape(name)}\b", re.I) for name in datasets]
        self.handles: set[bytes] = set()
        self.tickets: set[bytes] = set()
        self.lock = threading.Lock()

    def _wanted(self, sql: bytes) -> bool:
        text = sql.decode("utf-8", "replace")
        return bool(self.pattern.search(text)) and any(d.search(text) for d in self.datasets)

    def _known(self, kind: set[bytes], value: bytes) -> bool:
        with self.lock:
            return value in kind

    def _command(self, command: bytes) -> bool:
        type_url, body = proto.unpack_any(command)
        first = _field(body, 1)
        if type_url.endswith(".CommandStatementQuery"):
            return self._wanted(first)
        if type_url.endswith(".CommandPreparedStatementQuery"):
            return self._known(self.handles, first)
        return False

    def switches(self, method: str, first: bytes | None) -> bool:
        if first is None:
            return False
        if method == FLIGHT + "DoGet":
            return self._known(self.tickets, _field(first, 1))
        if method == FLIGHT + "GetFlightInfo":
            return self._command(_field(first, 2))
        if method == FLIGHT + "DoPut":
            descriptor = _field(first, 1)
            return bool(descriptor) and self._command(_field(descriptor, 2))
        if method == FLIGHT + "DoAction":
            kind, body = _field(first, 1).decode("utf-8", "replace"), _field(first, 2)
            _, request = proto.unpack_any(body)
            if kind == "CreatePreparedStatement":
                return self._wanted(_field(request, 1))
            if kind == "ClosePreparedStatement":
                return self._known(self.handles, _field(request, 1))
        return False

    def metadata(self, metadata: list[tuple[str, str]]) -> list[tuple[str, str]]:
        token = self.signer.token(self.audience, sub=BYPASS_SUBJECT)
        return [(k, v) for k, v in metadata if k != "authorization"] + [
            ("authorization", f"Bearer {token}")
        ]

    def remember(self, method: str, responses):
        """Passes the answers of a switched call on, remembering the handles and tickets they
        hold."""
        for message in responses:
            if method == FLIGHT + "GetFlightInfo":
                for endpoint in proto.decode(message).get(3, []):
                    ticket = _field(bytes(endpoint), 1)
                    if ticket:
                        with self.lock:
                            self.tickets.add(_field(ticket, 1))
            elif method == FLIGHT + "DoAction":
                _, result = proto.unpack_any(_field(message, 1))
                handle = _field(result, 1)
                if handle:
                    with self.lock:
                        self.handles.add(handle)
            yield message


def _field(message: bytes, number: int) -> bytes:
    """The first value of field `number` of a protobuf message, as bytes (empty when absent)."""
    value = proto.decode(message).get(number, [b""])[0]
    return bytes(value) if not isinstance(value, int) else b""


class Forward(grpc.GenericRpcHandler):
    """Every Flight method as a stream of raw messages both ways (gRPC does not distinguish
    unary calls on the wire), passed to the upstream node with the caller's metadata."""

    def __init__(self, upstream: str, breaks: str, bypass: Bypass | None = None):
        target = upstream.split("://", 1)[-1]
        self.channel = grpc.insecure_channel(target, options=UNLIMITED)
        self.breaks = breaks
        self.bypass = bypass

    def service(self, details):
        method = details.method

        def handle(requests_in, context):
            metadata = [
                (k, v) for k, v in context.invocation_metadata()
                if not k.startswith(":") and k not in HOP_HEADERS
            ]  # fmt: skip
            call = self.channel.stream_stream(method)
            switched = False
            if self.bypass is not None:
                first = next(requests_in, None)
                switched = self.bypass.switches(method, first)
                if switched:
                    metadata = self.bypass.metadata(metadata)
                requests_in = _prepend(first, requests_in)
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
                if switched:
                    yield from self.bypass.remember(method, responses)
                else:
                    yield from self._mutated(method, responses)
            except grpc.RpcError as err:
                if self.breaks == "partial-answers" and method == FLIGHT + "DoGet":
                    return  # the stream ends as if the answer were complete
                context.abort(err.code(), err.details() or "")

        return grpc.stream_stream_rpc_method_handler(handle)

    def _mutated(self, method: str, responses):
        if self.breaks == "nullability" and method == FLIGHT + "GetFlightInfo":
            for info in responses:
                schema = _field(info, 1)
                if schema:
                    inverted = _inverted(pa.ipc.read_schema(pa.py_buffer(schema)))
                    info = _replace(info, 1, inverted.serialize().to_pybytes())
                yield info
        elif self.breaks == "nullability" and method == FLIGHT + "DoGet":
            for data in responses:
                header = _field(data, 2)
                if header and _is_schema_header(header):
                    data = _replace(data, 2, _invert_header(header))
                yield data
        elif self.breaks == "empty-without-schema" and method == FLIGHT + "DoGet":
            held, first = None, True
            for data in responses:
                if first:
                    first = False
                    header = _field(data, 2)
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
    descriptor = _field(message, 1)
    command = _field(descriptor, 2) if descriptor else b""
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


def start_proxy(flight: str, http: str, breaks: str, bypass: Bypass | None = None) -> tuple[str, str]:
    """Starts the proxy in front of the node at `flight` and `http`; returns its two URLs."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=UNLIMITED)
    server.add_generic_rpc_handlers([Forward(flight, breaks, bypass)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    rewrite = (flight.encode(), f"grpc://127.0.0.1:{port}".encode())
    web = ThreadingHTTPServer(("127.0.0.1", 0), http_handler(http.rstrip("/"), breaks, rewrite))
    web.daemon_threads = True
    threading.Thread(target=web.serve_forever, daemon=True).start()
    _RUNNING.append((server, web))  # a server no longer referenced stops
    return f"grpc://127.0.0.1:{port}", f"http://127.0.0.1:{web.server_port}"


_RUNNING: list = []


# --- as the node command of a run ---------------------------------------------------------------


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def _replace_option(args: list[str], name: str, value: str) -> list[str]:
    at = args.index(name) + 1
    return [*args[:at], value, *args[at + 1 :]]


def _with_first_rule(policy: str, datasets: set[str], names: list[str]) -> str:
    """`policy` (Polder's TOML, datasets in the order of `names`) with a first raw rule for
    `BYPASS_SUBJECT` in each dataset of `datasets` that has rules."""
    out, index, done = [], -1, False
    for line in policy.splitlines(keepends=True):
        header = line.strip()
        if header == "[[dataset]]":
            index, done = index + 1, False
        elif header == "[[dataset.rule]]" and not done and names[index] in datasets:
            out.append(f'[[dataset.rule]]\nsubjects = ["{BYPASS_SUBJECT}"]\naccess = "raw"\n\n')
            done = True
        out.append(line)
    return "".join(out)


def _bypass(args: list[str], breaks: str, workdir: Path) -> tuple[list[str], Bypass | None]:
    """`serve` arguments with the break's identity added to the node's keys and policy."""
    policy, jwks = _option(args, "--policy"), _option(args, "--jwks")
    issuer, audience = _option(args, "--issuer"), _option(args, "--audience")
    if not (policy and jwks and issuer and audience) or "://" in jwks:
        return args, None  # a node without access control: nothing to bypass
    text = Path(policy).read_text(encoding="utf-8")
    datasets = tomllib.loads(text).get("dataset", [])
    names = [d.get("name", "") for d in datasets]
    if breaks == "masked-column-leak":
        concerned = {d["name"] for d in datasets if any(r.get("masks") for r in d.get("rule", []))}
    else:
        concerned = {d["name"] for d in datasets if "aggregate" in d}
    if not concerned:
        return args, None
    signer = tokens.Signer.new(kid="udn-broken-node")
    signer.issuer = issuer
    keys = json.loads(Path(jwks).read_text(encoding="utf-8"))
    keys["keys"] = [*keys.get("keys", []), signer.jwk()]
    (workdir / "jwks.json").write_text(json.dumps(keys), encoding="utf-8")
    # Next to the original: paths in a policy are relative to its folder.
    broken = Path(policy).with_name(f"{Path(policy).stem}.broken-{os.getpid()}.toml")
    broken.write_text(_with_first_rule(text, concerned, names), encoding="utf-8")
    args = _replace_option(args, "--jwks", str(workdir / "jwks.json"))
    args = _replace_option(args, "--policy", str(broken))
    return args, Bypass(breaks, signer, audience, concerned)


def wrap(binary: str, breaks: str, node_args: list[str]) -> int:
    """Runs `binary` with `node_args`; `serve` behind the proxy (see the module docs)."""
    if not node_args or node_args[0] != "serve":
        os.execv(binary, [binary, *node_args])
    workdir = Path(tempfile.mkdtemp(prefix="udn-broken-node-"))
    args, bypass = list(node_args), None
    if breaks in BYPASS_BREAKS:
        args, bypass = _bypass(args, breaks, workdir)
    # stderr is the node's own: the suite reads it for startup errors and logs.
    process = subprocess.Popen([binary, *args], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               text=True)  # fmt: skip
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: process.send_signal(number))
    for line in process.stdout:
        match = LISTENING.match(line.strip())
        if match is None:
            print(line, end="", flush=True)
            continue
        flight, http = start_proxy(match.group(2), match.group(3), breaks, bypass)
        print(f"polder node {match.group(1)} listening flight={flight} http={http}", flush=True)
        break
    for line in process.stdout:
        print(line, end="", flush=True)
    code = process.wait()
    sys.stdout.flush()
    os._exit(code if code >= 0 else 128 - code)


def main() -> int:
    argv = sys.argv[1:]
    node_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, node_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flight", help="the real node's Flight SQL URL")
    parser.add_argument("--http", help="the real node's HTTP base URL")
    parser.add_argument("--wrap", metavar="BINARY",
                        help="run BINARY with the arguments after `--`, behind the proxy")
    parser.add_argument("--break", dest="breaks", choices=BREAKS, required=True)
    args = parser.parse_args(argv)
    if args.wrap:
        return wrap(args.wrap, args.breaks, node_args)
    if not (args.flight and args.http):
        parser.error("--flight and --http, or --wrap BINARY -- ARGUMENTS")
    flight, http = start_proxy(args.flight, args.http, args.breaks)
    print(f"listening flight={flight} http={http}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
