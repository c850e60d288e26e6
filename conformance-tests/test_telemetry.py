"""Telemetry: one trace across a federation (UDN-OPS-5), metrics in the Prometheus text format
(UDN-OPS-4), JSON logs with the trace id, and a collector that is down costing no query.

Three sample cities (amsterdam federating utrecht and rotterdam) export traces and metrics over
OTLP/HTTP to a receiver this module starts (`udn_conformance.otlp`, built on the
`opentelemetry-proto` messages). The client starts the trace: its `traceparent` names a trace id
and a span id of its own, so the test knows which trace is the query's and where its root is.
"""

from __future__ import annotations

import json
import secrets
import socket

import adbc_driver_flightsql as adbc_flightsql
import adbc_driver_flightsql.dbapi
import pytest
import pyarrow as pa
import requests
from prometheus_client.parser import text_string_to_metric_families

from udn_conformance import flightsql, paths
from udn_conformance.otlp import GrpcReceiver, Receiver, poll

# Literals that must never reach a span, a metric or a log line of telemetry.
SECRET_TEXT = "zq_secret_4711"
SECRET_NUMBER = "12345.678"

FEDERATED = (
    f"SELECT 'utrecht' AS city, count(*) AS n FROM utrecht.public.air_quality "
    f"WHERE pm2_5 < {SECRET_NUMBER} AND CAST(pm10 AS VARCHAR) <> '{SECRET_TEXT}' "
    f"UNION ALL "
    f"SELECT 'rotterdam', count(*) FROM rotterdam.public.air_quality "
    f"WHERE pm2_5 < {SECRET_NUMBER} AND CAST(pm10 AS VARCHAR) <> '{SECRET_TEXT}'"
)

# Spans leave a node within a fifth of a second; metrics every half second.
FAST_EXPORT = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "500",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
}


def traceparent() -> tuple[str, str, str]:
    """A W3C traceparent header value with a fresh trace id and parent span id."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def connect(node, headers: dict[str, str] | None = None):
    options = {
        adbc_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: "60",
        adbc_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: "60",
    }
    for name, value in (headers or {}).items():
        options[adbc_flightsql.DatabaseOptions.RPC_CALL_HEADER_PREFIX.value + name] = value
    return adbc_driver_flightsql.dbapi.connect(node.flight_url, db_kwargs=options, autocommit=True)


def run(node, sql: str, headers: dict[str, str] | None = None):
    with connect(node, headers) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def metrics(node) -> dict[tuple[str, tuple], float]:
    """The node's /metrics, parsed by the Prometheus client's text parser: value by
    (sample name, sorted labels)."""
    response = requests.get(f"{node.http_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def find_counter(samples, method: str, code: str) -> tuple[str, tuple] | None:
    """The key of a counter sample labelled with this Flight method and gRPC status code,
    whatever the vendor names the counter."""
    for name, labels in samples:
        labels_dict = dict(labels)
        if (
            name.endswith("_total")
            and labels_dict.get("method") == method
            and labels_dict.get("code") == code
        ):
            return (name, labels)
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def federation(launcher, receiver):
    """Three sample cities exporting to the receiver; amsterdam federates the other two and
    logs JSON (with its federation's debug lines, which are written inside the query's spans)."""
    env = {**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    peers = {
        city: launcher.spawn([], name=city, env=env) for city in ("utrecht", "rotterdam")
    }
    coordinator = launcher.spawn(
        [
            "--log-format",
            "json",
            *[arg for city, node in peers.items() for arg in ("--peer", f"{city}={node.flight_url}")],
        ],
        name="amsterdam",
        env={**env, "POLDER_LOG": "info,polder_federation=debug"},
        wait_peers=list(peers),
    )
    return {"amsterdam": coordinator, **peers}


@pytest.mark.requirement("UDN-OPS-5")
def test_one_federated_query_is_one_trace_across_three_nodes(federation, receiver):
    header, trace_id, client_span = traceparent()
    table = run(federation["amsterdam"], FEDERATED, {"traceparent": header})
    assert table.num_rows == 2

    def complete(r: Receiver):
        """Every node's RPC spans and the coordinator's remote parts have arrived (each node
        exports on its own schedule)."""
        spans = r.trace(trace_id)
        rpcs = {(s.node, s.attributes.get("rpc.method")) for s in spans if s.kind == "server"}
        parts = [s for s in spans if s.name == "peer_query"]
        wanted = {(n, m) for n in ("amsterdam", "utrecht", "rotterdam") for m in ("GetFlightInfo", "DoGet")}
        return spans if rpcs >= wanted and len(parts) >= 2 else None

    spans = receiver.wait_for(complete, what=f"server spans of trace {trace_id} from all three nodes")
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        assert span.resource.get("service.name") == "polder", span.resource
        assert span.node in {"amsterdam", "utrecht", "rotterdam"}, span.resource

    # The coordinator's RPC spans are children of the client's span.
    roots = [s for s in spans if s.node == "amsterdam" and s.kind == "server"]
    assert roots and all(s.parent_span_id == client_span for s in roots), [
        (s.name, s.parent_span_id) for s in roots
    ]
    assert {s.attributes.get("rpc.method") for s in roots} >= {"GetFlightInfo", "DoGet"}

    def ancestors(span):
        seen = []
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            seen.append(span)
        return seen

    # One remote part per peer, a client span under the coordinator's DoGet, and each peer's
    # RPC spans are its children.
    parts = [s for s in spans if s.node == "amsterdam" and s.name == "peer_query"]
    assert {s.attributes.get("peer") for s in parts} == {"utrecht", "rotterdam"}, parts
    for part in parts:
        assert part.kind == "client"
        assert any(
            a.kind == "server" and a.attributes.get("rpc.method") == "DoGet" for a in ancestors(part)
        ), f"peer_query for {part.attributes.get('peer')} is not under the coordinator's DoGet"
        assert part.attributes.get("outcome") == "ok", part.attributes
        children = [s for s in spans if s.parent_span_id == part.span_id]
        assert children, f"no span of {part.attributes.get('peer')} is a child of its remote part"
        assert {c.node for c in children} == {part.attributes.get("peer")}
        assert all(c.kind == "server" for c in children)
        assert {c.attributes.get("rpc.method") for c in children} >= {"GetFlightInfo", "DoGet"}
        for child in children:
            assert child.attributes.get("rpc.grpc.status_code") == 0, child.attributes

    # The peers' query spans name the dataset and the rows they sent.
    executed = [s for s in spans if s.node in {"utrecht", "rotterdam"} and s.name == "query"]
    assert executed and all(s.attributes.get("datasets") == "air_quality" for s in executed)
    assert all(s.attributes.get("rows") == 1 for s in executed), [(s.attributes.get("rows"), s.attributes.get("outcome")) for s in executed]


@pytest.mark.requirement("UDN-OPS-5")
def test_no_literal_of_a_query_in_any_span_metric_or_log(federation, receiver):
    header, trace_id, _ = traceparent()
    run(federation["amsterdam"], FEDERATED, {"traceparent": header})
    receiver.wait_for(
        lambda r: {s.node for s in r.trace(trace_id)} >= {"amsterdam", "utrecht", "rotterdam"},
        what="the trace from all three nodes",
    )
    receiver.wait_for(lambda r: r.metric_requests, what="OTLP metrics")
    with receiver.lock:
        payloads = list(receiver.raw)
        spans = list(receiver.spans)
    for payload in payloads:
        assert SECRET_TEXT.encode() not in payload
        assert SECRET_NUMBER.encode() not in payload
    # The SQL's length may be recorded, never its text.
    assert not any("SELECT" in json.dumps(s.attributes) for s in spans)
    for node in federation.values():
        text = requests.get(f"{node.http_url}/metrics", timeout=10).text
        assert SECRET_TEXT not in text and SECRET_NUMBER not in text
        assert "SELECT" not in text


@pytest.mark.beyond_spec("Polder's --log-format json: one object per line with the trace id")
def test_json_logs_carry_the_trace_id(federation, receiver):
    header, trace_id, _ = traceparent()
    run(federation["amsterdam"], FEDERATED, {"traceparent": header})
    coordinator = federation["amsterdam"]

    def logged(_):
        lines = coordinator.stderr_text().splitlines()
        return [line for line in lines if trace_id in line]

    lines = receiver.wait_for(logged, what=f"a log line of trace {trace_id}")
    for line in coordinator.stderr_text().splitlines():
        json.loads(line)  # every line is one JSON object
    record = json.loads(lines[0])
    assert record["openTelemetry"]["traceId"] == trace_id, record
    assert record["level"] in {"DEBUG", "INFO", "WARN", "ERROR", "TRACE"}
    assert SECRET_TEXT not in coordinator.stderr_text()


def needs_http(node):
    if node.http_url is None:
        pytest.skip("needs the node's HTTP address (UDN_HTTP_URL)")


@pytest.mark.requirement("UDN-OPS-4")
def test_metrics_count_exactly_the_queries_run(main_node):
    """Raw Flight SQL calls, so that each query is exactly one GetFlightInfo and one DoGet.
    Runs against any node (remote mode too): the counter is found by its labels."""
    needs_http(main_node)
    c = flightsql.client(main_node)
    before = metrics(main_node)
    runs = 7
    for _ in range(runs):
        _, table = flightsql.statement(c, "SELECT 1 AS one")
        assert table.num_rows == 1
    failing = 2
    for _ in range(failing):
        with pytest.raises(pa.ArrowException):
            flightsql.statement(c, "SELECT count(*) FROM udn_no_such_table")
    after = metrics(main_node)

    ok = find_counter(after, "DoGet", "OK")
    assert ok is not None, "no counter of Flight RPCs labelled method and code"
    assert after[ok] - before.get(ok, 0) == runs
    planned = find_counter(after, "GetFlightInfo", "OK")
    assert after[planned] - before.get(planned, 0) == runs
    refused = [
        key for key in after
        if key[0] == ok[0] and dict(key[1]).get("method") == "GetFlightInfo" and dict(key[1]).get("code") != "OK"
    ]
    moved = sum(after[key] - before.get(key, 0) for key in refused)
    assert moved == failing, refused


@pytest.mark.beyond_spec("Polder's metric families: queries and rows by dataset, latency, memory")
def test_polder_metrics_by_dataset(federation):
    node = federation["utrecht"]
    c = flightsql.client(node)
    before = metrics(node)
    runs = 5
    for _ in range(runs):
        flightsql.statement(c, "SELECT count(*) FROM air_quality")
    after = metrics(node)
    queries = ("polder_queries_total", (("dataset", "air_quality"), ("outcome", "ok")))
    assert after[queries] - before.get(queries, 0) == runs
    rows = ("polder_query_rows_total", (("dataset", "air_quality"),))
    assert after[rows] - before.get(rows, 0) == runs  # one row each
    histogram = ("polder_rpc_duration_seconds_count", (("method", "DoGet"),))
    assert after[histogram] - before.get(histogram, 0) == runs
    assert ("polder_rpc_active", ()) in after
    assert ("polder_memory_reserved_bytes", ()) in after
    http = [k for k in after if k[0] == "polder_http_requests_total" and ("route", "/metrics") in k[1]]
    assert http, "HTTP requests are counted by route"


@pytest.mark.requirement("UDN-OPS-4")
def test_metrics_label_no_unbounded_or_secret_value(main_node):
    """Requests carrying a secret in a path, a SPARQL query and a SQL literal: none of it may
    appear in the metrics."""
    needs_http(main_node)
    requests.get(f"{main_node.http_url}/no/such/{SECRET_TEXT}", timeout=10)
    requests.get(
        f"{main_node.http_url}/sparql",
        params={"query": f"SELECT * WHERE {{ ?s ?p '{SECRET_TEXT}' }}"},
        timeout=10,
    )
    c = flightsql.client(main_node)
    flightsql.statement(c, f"SELECT '{SECRET_TEXT}' AS s, {SECRET_NUMBER} AS n")
    with pytest.raises(pa.ArrowException):
        flightsql.statement(c, f"SELECT * FROM {SECRET_TEXT}")
    text = requests.get(f"{main_node.http_url}/metrics", timeout=10).text
    assert SECRET_TEXT not in text and SECRET_NUMBER not in text
    metrics(main_node)  # parses


@pytest.mark.beyond_spec("Polder labels unrouted HTTP paths `unmatched` and routes by template")
def test_polder_http_routes_are_templates(federation):
    node = federation["rotterdam"]
    requests.get(f"{node.http_url}/no/such/{SECRET_TEXT}", timeout=10)
    requests.get(f"{node.http_url}/sparql", timeout=10)
    samples = metrics(node)
    routes = {dict(labels).get("route") for name, labels in samples if name == "polder_http_requests_total"}
    assert "unmatched" in routes and "/sparql" in routes, routes


@pytest.mark.beyond_spec("Polder's OTLP export: a collector that is down never fails a query")
def test_a_dead_collector_costs_no_query(launcher):
    dead = f"http://127.0.0.1:{free_port()}"
    node = launcher.spawn(
        [],
        name="utrecht",
        env={**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": dead},
    )
    for _ in range(20):
        assert run(node, "SELECT count(*) FROM air_quality").num_rows == 1

    def failed():
        samples = metrics(node)
        key = ("polder_telemetry_spans_total", (("outcome", "failed"),))
        return samples.get(key, 0) > 0

    poll(failed, what="spans counted as failed exports")
    assert run(node, "SELECT count(*) FROM air_quality").num_rows == 1
    warnings = [line for line in node.stderr_text().splitlines() if "cannot export" in line]
    assert len(warnings) == 1, warnings
    assert node.alive()


@pytest.mark.beyond_spec("Polder's OTLP export settings are checked at startup")
def test_an_unsupported_otlp_protocol_stops_the_start_naming_it(polder_bin, tmp_path):
    import subprocess

    result = subprocess.run(
        [str(polder_bin), "serve", "--flight", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        env={
            "PATH": "/usr/bin:/bin",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in result.stderr and "http/json" in result.stderr


@pytest.mark.beyond_spec("Polder's Grafana dashboard names only metrics a node exports")
def test_the_dashboard_names_only_metrics_the_node_exports(federation, receiver):
    import re

    if paths.REPO is None:
        pytest.skip("Polder's dashboard is a file of its repository, not of the installed suite")
    dashboard = paths.REPO / "helm" / "polder-node" / "dashboards" / "polder-node.json"
    exprs = [t["expr"] for p in json.loads(dashboard.read_text())["panels"] for t in p["targets"]]
    named = {m for e in exprs for m in re.findall(r"\b(polder_[a-z_]+)", e)}
    # The coordinator has run federated queries (peers, spans) by now; run one more.
    run(federation["amsterdam"], FEDERATED)
    receiver.wait_for(lambda r: r.spans, what="spans")
    text = requests.get(f"{federation['amsterdam'].http_url}/metrics", timeout=10).text
    poll(lambda: "polder_telemetry_spans_total" in requests.get(
        f"{federation['amsterdam'].http_url}/metrics", timeout=10).text, what="exported spans counted")
    text = requests.get(f"{federation['amsterdam'].http_url}/metrics", timeout=10).text
    exported = {f.name for f in text_string_to_metric_families(text)}
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    # Series that appear with their first event: access control on nodes with [auth], a peer's
    # failures with its first failure.
    needs_auth = {
        "polder_jwks_age_seconds",
        "polder_audit_write_failures_total",
        "polder_peer_failures_total",
    }
    missing = sorted(n for n in named - needs_auth if n not in samples and n not in exported)
    assert not missing, f"the dashboard names metrics the node does not export: {missing}"


@pytest.mark.beyond_spec("Polder's OTLP export over gRPC (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)")
def test_spans_and_metrics_export_over_otlp_grpc(launcher):
    receiver = GrpcReceiver().start()
    try:
        node = launcher.spawn(
            [],
            name="rotterdam",
            env={
                **FAST_EXPORT,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            },
        )
        header, trace_id, client_span = traceparent()
        run(node, "SELECT count(*) FROM air_quality", {"traceparent": header})
        spans = receiver.wait_for(
            lambda r: [s for s in r.trace(trace_id) if s.name == "query"], what="the query's span"
        )
        assert spans[0].resource["service.instance.id"] == "rotterdam"
        assert spans[0].attributes.get("datasets") == "air_quality"
        receiver.wait_for(lambda r: r.metric_requests, what="metrics over gRPC")
        assert node.alive()
    finally:
        receiver.stop()
