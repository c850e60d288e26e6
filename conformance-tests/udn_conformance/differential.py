"""Differential testing: generated queries run four ways, answers compared.

Each query of `querygen` runs

- on **DuckDB** over the same files (the reference), parameters bound by DuckDB;
- on **one node** over ADBC: the city that owns every table the query reads, or, for a query
  across cities, a node serving all the tables;
- through a **federation**: a coordinator whose three peers (cities) own the tables, tables
  named `<city>.public.<table>`, over ADBC with the same parameters;
- with **`polder sql`** (client-side federation: DataFusion in the client process) for every
  `client_every`-th query, parameters inlined as literals, the answer read from Parquet.

Answers must be equal: the same column names, rows as multisets (ordered when the query has an
ORDER BY, which the generator always makes total), floats within a relative tolerance, and the
same type family in every Polder answer. A Polder path that fails where another path answers
is a failure; an internal error always is. When every Polder path refuses a query with the same
status and DuckDB answers it, the query is counted as *refused* (reported, not a failure).
A failing query is shrunk: parts of it are removed while it still fails the same way.

As a command (from `conformance-tests/`, with a built node binary):

    ../.venv/bin/python -m udn_conformance.differential --queries 5000 --seed 7

starts the nodes itself, prints every failure with its shrunk reproducer and exits 1 on any.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import decimal
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbc_driver_manager
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import paths
from . import querygen as g
from .compare import assert_same_rows, normalize, rows_of, rows_of_arrow, type_family
from .errors import adbc_grpc_status

# Where the tables live in the federation (TPC-H as in test_federation.py, plus two tables of
# the differential test with NULLs in every column type).
PLACEMENT = {
    "amsterdam": ["lineitem", "part", "obs"],
    "utrecht": ["orders", "customer", "tags"],
    "rotterdam": ["supplier", "partsupp", "nation", "region"],
}
HOME = {table: node for node, tables in PLACEMENT.items() for table in tables}
KEYS = {
    "region": ["r_regionkey"], "nation": ["n_nationkey"], "supplier": ["s_suppkey"],
    "customer": ["c_custkey"], "part": ["p_partkey"], "partsupp": ["ps_partkey", "ps_suppkey"],
    "orders": ["o_orderkey"], "lineitem": ["l_orderkey", "l_linenumber"], "obs": ["id"],
    "tags": ["k"],
}
# Big tables are picked rarely, so that a few hundred queries stay fast on a debug build.
WEIGHTS = {"lineitem": 0.3, "orders": 0.7, "partsupp": 0.7, "obs": 3.0, "tags": 1.5,
           "nation": 1.5, "region": 1.0}
LINKS = (
    (("nation", "n_regionkey"), ("region", "r_regionkey")),
    (("customer", "c_nationkey"), ("nation", "n_nationkey")),
    (("supplier", "s_nationkey"), ("nation", "n_nationkey")),
    (("orders", "o_custkey"), ("customer", "c_custkey")),
    (("lineitem", "l_orderkey"), ("orders", "o_orderkey")),
    (("lineitem", "l_partkey"), ("part", "p_partkey")),
    (("lineitem", "l_suppkey"), ("supplier", "s_suppkey")),
    (("partsupp", "ps_partkey"), ("part", "p_partkey")),
    (("partsupp", "ps_suppkey"), ("supplier", "s_suppkey")),
    (("obs", "nation"), ("nation", "n_nationkey")),
    (("obs", "k"), ("tags", "k")),
    (("obs", "k"), ("region", "r_regionkey")),
    (("tags", "k"), ("nation", "n_regionkey")),
)
POLDER_PATHS = ("node", "federation", "client")
# Statuses a node may answer a query it will not run with; anything else is a bug.
REFUSALS = {"InvalidArgument", "NotFound", "Unimplemented", "PermissionDenied",
            "ResourceExhausted", "FailedPrecondition"}
CLIENT_CODES = {
    "invalid_request": "InvalidArgument", "not_found": "NotFound", "unsupported": "Unimplemented",
    "forbidden": "PermissionDenied", "resource_exhausted": "ResourceExhausted",
    "timeout": "DeadlineExceeded", "upstream": "Unavailable", "bad_data": "FailedPrecondition",
    "internal": "Internal", "unauthenticated": "Unauthenticated",
}


# --- data ----------------------------------------------------------------------------------


def obs_table(rows: int = 400) -> pa.Table:
    """Observations with NULLs in every column, of every type a node serves and clients bind."""
    rng = random.Random(4242)
    labels = ["ams-01", "Ams-02", "utr_01", "a%b", "x_y", "", "rtm 03", "ein-04"]

    def maybe(v, p=0.1):
        return None if rng.random() < p else v

    base = dt.datetime(2024, 3, 30, 22, 0, 0)
    cols: dict[str, list] = {k: [] for k in
                             "id k nation label f amount flag day ts tstz payload".split()}
    for i in range(rows):
        t = base + dt.timedelta(minutes=37 * rng.randint(0, 400),
                                microseconds=rng.choice([0, 0, 123456]))
        cols["id"].append(i)
        cols["k"].append(maybe(rng.randint(0, 9)))
        cols["nation"].append(maybe(rng.randint(0, 24)))
        cols["label"].append(maybe(rng.choice(labels)))
        cols["f"].append(maybe(rng.choice([-2.25, 0.0, 0.5, 1.125, 3.75, 10.0, 99.5, -7.5])
                               + rng.randint(0, 5)))
        cols["amount"].append(maybe(decimal.Decimal(rng.randint(-5000, 90000)) / 100))
        cols["flag"].append(maybe(rng.random() < 0.5))
        cols["day"].append(maybe(t.date()))
        cols["ts"].append(maybe(t))
        cols["tstz"].append(maybe(t.replace(tzinfo=dt.UTC) + dt.timedelta(hours=rng.randint(0, 5))))
        cols["payload"].append(maybe(bytes([rng.randint(0, 3), rng.randint(0, 255)])))
    return pa.table({
        "id": pa.array(cols["id"], pa.int64()),
        "k": pa.array(cols["k"], pa.int32()),
        "nation": pa.array(cols["nation"], pa.int64()),
        "label": pa.array(cols["label"], pa.string()),
        "f": pa.array(cols["f"], pa.float64()),
        "amount": pa.array(cols["amount"], pa.decimal128(10, 2)),
        "flag": pa.array(cols["flag"], pa.bool_()),
        "day": pa.array(cols["day"], pa.date32()),
        "ts": pa.array(cols["ts"], pa.timestamp("us")),
        "tstz": pa.array(cols["tstz"], pa.timestamp("us", tz="UTC")),
        "payload": pa.array(cols["payload"], pa.binary()),
    })


def tags_table() -> pa.Table:
    """A small dimension for `obs.k`: keys 0..11 (10 and 11 match nothing, 0..9 do)."""
    names = ["alpha", "beta", None, "delta", "eps_1", "zeta", "eta", "Theta", "iota", "kappa",
             "lambda", "mu"]
    return pa.table({
        "k": pa.array(range(12), pa.int32()),
        "tag": pa.array(names, pa.string()),
        "weight": pa.array([decimal.Decimal(i * 37 % 100) / 4 if i % 5 else None
                            for i in range(12)], pa.decimal128(6, 2)),
        "active": pa.array([i % 3 != 0 for i in range(12)], pa.bool_()),
    })


def write_tables(out: Path) -> dict[str, Path]:
    """The differential test's own tables as Parquet in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"obs": out / "obs.parquet", "tags": out / "tags.parquet"}
    pq.write_table(obs_table(), files["obs"])
    pq.write_table(tags_table(), files["tags"])
    return files


def schema_of(files: dict[str, Path]) -> g.Schema:
    tables = {}
    for name, path in files.items():
        tables[name] = g.table_info(name, pq.read_table(path), KEYS[name], HOME[name],
                                    WEIGHTS.get(name, 1.0))
    return g.Schema(tables, LINKS)


# --- running one query every way ------------------------------------------------------------


def _plain(rows: list[tuple]) -> list[tuple]:
    """Nanosecond timestamps come out of pyarrow as pandas Timestamps: plain datetimes here."""
    return [tuple(v.to_pydatetime() if hasattr(v, "to_pydatetime") else v for v in row)
            for row in rows]


@dataclass
class Answer:
    names: list[str]
    families: list[str]
    rows: list[tuple]


@dataclass
class Failure:
    status: str
    message: str


Outcome = Answer | Failure


@dataclass
class Engines:
    """Everything a query runs on. `spawn(args, name)` starts a node (`polder serve`)."""

    files: dict[str, Path]
    cities: dict[str, Any]  # city -> Node
    solo: Any  # a Node serving every table
    coordinator: Any
    polder_bin: Path | None
    reference: duckdb.DuckDBPyConnection = field(init=False)
    _conns: dict = field(default_factory=dict)

    def __post_init__(self):
        self.reference = duckdb.connect()
        self.reference.execute("SET TimeZone = 'UTC'")
        # A query the generator made too big fails here (and is skipped), not the machine.
        self.reference.execute("SET memory_limit = '2GB'")
        for name, path in self.files.items():
            self.reference.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")

    def conn(self, node):
        key = node.flight_url
        if key not in self._conns:
            self._conns[key] = node.connect()
        return self._conns[key]

    def close(self):
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:  # a connection to a node that is gone
                pass
        self._conns.clear()


# Answers longer than this are not compared (a join the generator made too big): DuckDB
# says so first, and the query is skipped.
MAX_ROWS = 20_000
REFERENCE_TIMEOUT_S = 20
TOO_BIG = "TooBig"


def _duckdb(engines: Engines, q: g.Query) -> Outcome:
    r = g.Render()
    sql = q.sql(r)
    cur = engines.reference.cursor()
    watchdog = threading.Timer(REFERENCE_TIMEOUT_S, cur.interrupt)
    watchdog.start()
    try:
        cur.execute(sql, r.params) if r.params else cur.execute(sql)
        names = [d[0] for d in cur.description]
        rows = cur.fetchmany(MAX_ROWS + 1)
    except (duckdb.OutOfMemoryException, duckdb.InterruptException) as e:
        return Failure(TOO_BIG, str(e) or "interrupted")
    except duckdb.Error as e:
        return Failure(type(e).__name__, str(e))
    finally:
        watchdog.cancel()
        cur.close()  # an open cursor holds its whole result
    if len(rows) > MAX_ROWS:
        return Failure(TOO_BIG, f"more than {MAX_ROWS} rows")
    return Answer(names, [], rows_of(rows))


def _adbc(conn, sql: str, params: list) -> Outcome:
    try:
        with conn.cursor() as cur:
            if params:
                cur.execute(sql, parameters=params)
            else:
                cur.execute(sql)
            table = cur.fetch_arrow_table()
    except adbc_driver_manager.Error as e:
        return Failure(adbc_grpc_status(e), str(e))
    return Answer(table.column_names, [type_family(t) for t in table.schema.types],
                  _plain(rows_of_arrow(table)))


def single_home(q: g.Query) -> str | None:
    homes = {HOME[t] for t in q.tables()}
    return homes.pop() if len(homes) == 1 else None


def _node(engines: Engines, q: g.Query) -> Outcome:
    home = single_home(q)
    node = engines.cities[home] if home else engines.solo
    r = g.Render()
    return _adbc(engines.conn(node), q.sql(r), r.params)


def qualify(table: str) -> str:
    return f"{HOME[table]}.public.{table}"


def _federation(engines: Engines, q: g.Query) -> Outcome:
    r = g.Render(qualify=qualify)
    return _adbc(engines.conn(engines.coordinator), q.sql(r), r.params)


def _client(engines: Engines, q: g.Query) -> Outcome:
    sql = q.sql(g.Render(qualify=qualify, inline=True))
    with tempfile.TemporaryDirectory(prefix="udn-diff-") as tmp:
        out = Path(tmp) / "answer.parquet"
        cmd = [str(engines.polder_bin), "sql", "--format", "parquet", "-o", str(out), "-c", sql]
        for name, node in engines.cities.items():
            cmd += ["--node", f"{name}={node.flight_url}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            message = done.stderr.strip()
            code = message.removeprefix("polder: error: ").split(":", 1)[0]
            return Failure(CLIENT_CODES.get(code, f"exit {done.returncode}"), message)
        table = pq.read_table(out)
    return Answer(table.column_names, [type_family(t) for t in table.schema.types],
                  _plain(rows_of_arrow(table)))


RUNNERS: dict[str, Callable[[Engines, g.Query], Outcome]] = {
    "duckdb": _duckdb, "node": _node, "federation": _federation, "client": _client,
}


@dataclass
class Verdict:
    kind: str  # agree, refused, unchecked, mismatch, error
    detail: str = ""
    paths: tuple[str, ...] = ()  # the Polder paths that went wrong
    key: str = ""  # what kind of error, for the shrinker

    @property
    def failed(self) -> bool:
        return self.kind in ("mismatch", "error")

    def signature(self) -> tuple:
        return (self.kind, self.paths, self.key)


def _error_key(message: str) -> str:
    """The gist of an error message: its words without numbers, names or quoted text."""
    core = message.split("] ", 1)[-1]
    core = re.sub(r"'[^']*'|\"[^\"]*\"|\([^)]*\)|[0-9]+", "", core)
    return " ".join(core.split()[:10])


def _differs(a: Answer, b: Answer, ordered: bool) -> str | None:
    if a.names != b.names:
        return f"column names {a.names} vs {b.names}"
    if a.families and b.families and a.families != b.families:
        return f"column types {a.families} vs {b.families}"
    try:
        assert_same_rows(a.rows, b.rows, ordered=ordered)
    except AssertionError as e:
        return str(e)
    return None


def judge(outcomes: dict[str, Outcome], ordered: bool) -> Verdict:
    ref = outcomes["duckdb"]
    polder = {p: o for p, o in outcomes.items() if p != "duckdb"}
    internal = [p for p, o in polder.items() if isinstance(o, Failure)
                and o.status not in REFUSALS]
    if internal:
        return Verdict("error", "; ".join(f"{p}: {polder[p].status}: {polder[p].message[:800]}"
                                          for p in internal), tuple(internal),
                       _error_key(polder[internal[0]].message))
    failed = {p: o for p, o in polder.items() if isinstance(o, Failure)}
    answered = {p: o for p, o in polder.items() if isinstance(o, Answer)}
    if failed and answered:
        return Verdict("error", "; ".join(f"{p}: {o.status}: {o.message[:800]}"
                                          for p, o in failed.items()) +
                       f" (while {', '.join(answered)} answered)", tuple(failed),
                       _error_key(next(iter(failed.values())).message))
    if failed:
        statuses = {o.status for o in failed.values()}
        if len(statuses) > 1:
            return Verdict("error", "paths refuse differently: " + "; ".join(
                f"{p}: {o.status}" for p, o in failed.items()), tuple(failed))
        if isinstance(ref, Failure):
            return Verdict("agree", "every engine refuses")
        first = next(iter(failed.values()))
        return Verdict("refused", f"{first.status}: {first.message[:800]}", tuple(failed),
                       _error_key(first.message))
    # Every Polder path answered: against DuckDB when it answered, else against each other.
    base_name, base = ("duckdb", ref) if isinstance(ref, Answer) else ("node", answered["node"])
    wrong = []
    details = []
    for p, o in answered.items():
        if p == base_name:
            continue
        diff = _differs(o, base, ordered)
        if diff:
            wrong.append(p)
            details.append(f"{p} vs {base_name}: {diff}")
    if wrong:
        return Verdict("mismatch", "\n".join(details), tuple(wrong))
    if isinstance(ref, Failure):
        return Verdict("unchecked", f"DuckDB: {ref.message[:300]}")
    return Verdict("agree")


def run_one(engines: Engines, q: g.Query, paths: tuple[str, ...]) -> tuple[Verdict, dict]:
    reference = _duckdb(engines, q)
    if isinstance(reference, Failure) and reference.status == TOO_BIG:
        return Verdict("skipped", reference.message), {"duckdb": reference}
    outcomes = {"duckdb": reference, **{p: RUNNERS[p](engines, q) for p in paths}}
    return judge(outcomes, q.ordered), outcomes


def shrink(engines: Engines, q: g.Query, verdict: Verdict, paths: tuple[str, ...],
           budget: int = 400) -> g.Query:
    """A smaller query failing the same way (same kind of failure on the same paths)."""
    wanted = verdict.signature()
    tried = 0
    improved = True
    while improved and tried < budget:
        improved = False
        for candidate in g.shrinks(q):
            if tried >= budget:
                break
            if g.size(candidate) >= g.size(q):
                continue
            tried += 1
            try:
                got, _ = run_one(engines, candidate, paths)
            except Exception:  # noqa: BLE001 - a candidate the renderer cannot print
                continue
            if got.signature() == wanted:
                q = candidate
                improved = True
                break
    return q


def describe_query(q: g.Query) -> str:
    r = g.Render()
    sql = q.sql(r)
    text = f"  SQL (one node, DuckDB): {sql}"
    if r.params:
        text += f"\n  parameters: {r.params!r}"
    fed = g.Render(qualify=qualify)
    text += f"\n  SQL (federation): {q.sql(fed)}"
    return text


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    failures: list[tuple[int, g.Query, Verdict, g.Query | None]] = field(default_factory=list)
    refusals: list[tuple[int, g.Query, Verdict, g.Query | None]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{sum(self.counts.values())} queries in {self.seconds:.1f} s: {parts}"

    def text(self) -> str:
        lines = [self.summary()]
        for i, q, v, small in self.failures:
            lines.append(f"\nquery #{i}: {v.kind} on {', '.join(v.paths)}\n{v.detail}")
            lines.append(describe_query(q))
            if small is not None and small != q:
                lines.append("shrunk to:")
                lines.append(describe_query(small))
        for i, q, v, small in self.refusals[:20]:
            lines.append(f"\nquery #{i} refused by every Polder path (DuckDB answers): {v.detail}")
            lines.append(describe_query(q))
            if small is not None and small != q:
                lines.append("shrunk to:")
                lines.append(describe_query(small))
        return "\n".join(lines)


def run(engines: Engines, schema: g.Schema, *, queries: int, seed: int, client_every: int = 5,
        shrink_failures: bool = True, known: Callable[[g.Query, Verdict], bool] | None = None,
        features: g.Features | None = None, progress: Callable[[str], None] | None = None,
        only: set[int] | None = None) -> Report:
    """Generate and run `queries` queries from `seed`; `known(q, verdict)` excuses a failure
    (a known bug), counted as `known`."""
    gen = g.QueryGenerator(schema, seed, features)
    report = Report()
    started = time.monotonic()
    for i in range(queries):
        q = gen.query()
        if only and i not in only:
            continue
        paths = ("node", "federation") + (("client",) if client_every and
                                          (i % client_every == 0 or only) and engines.polder_bin
                                          else ())
        verdict, _ = run_one(engines, q, paths)
        if verdict.failed and known is not None and known(q, verdict):
            report.counts["known"] += 1
            continue
        report.counts[verdict.kind] += 1
        if verdict.failed:
            small = shrink(engines, q, verdict, paths) if shrink_failures else None
            report.failures.append((i, q, verdict, small))
            if progress:
                progress(f"query #{i}: {verdict.kind} on {', '.join(verdict.paths)}")
        elif verdict.kind == "refused":
            small = shrink(engines, q, verdict, paths, budget=150) if shrink_failures else None
            report.refusals.append((i, q, verdict, small))
        if progress and (i + 1) % 100 == 0:
            progress(f"{i + 1} queries, {dict(report.counts)}")
    report.seconds = time.monotonic() - started
    return report


# --- starting the nodes ---------------------------------------------------------------------


def start_engines(spawn: Callable[..., Any], files: dict[str, Path], polder_bin: Path | None,
                  config_dir: Path) -> Engines:
    """Three cities, a coordinator over them and a node serving everything, via `spawn(args,
    name=...)` (`Launcher.spawn` in pytest, `node.spawn` from the command line)."""
    def tables(names):
        return [a for t in names for a in ("--table", f"{t}={files[t]}")]

    cities = {name: spawn(tables(names), name=name) for name, names in PLACEMENT.items()}
    config = config_dir / "coordinator.toml"
    config.write_text('[federation]\npeer_timeout = "60s"\nrefresh_interval = "5s"\n')
    peers = [a for name, n in cities.items() for a in ("--peer", f"{name}={n.flight_url}")]
    coordinator = spawn(["--config", str(config), *peers], name="coordinator")
    solo = spawn(tables(files), name="solo")
    return Engines(files, cities, solo, coordinator, polder_bin)


def main(argv: list[str] | None = None) -> int:
    from . import datasets
    from .node import spawn as spawn_node

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--client-every", type=int, default=5,
                        help="run every Nth query through `polder sql` too (0: never)")
    parser.add_argument("--no-shrink", action="store_true")
    parser.add_argument("--only", type=int, action="append", default=[], metavar="N",
                        help="run only query number N of the sequence (repeatable)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder for the generated files (default: a temporary one)")
    args = parser.parse_args(argv)

    target = paths.target_dir()
    configured = os.environ.get("POLDER_BIN")
    binary = Path(configured) if configured else target / "debug" / "polder" if target else None
    if binary is None or not binary.is_file():
        print(f"no node binary at {binary}: cargo build -p polder-node, or set POLDER_BIN",
              file=sys.stderr)
        return 2
    data = args.data or Path(tempfile.mkdtemp(prefix="udn-differential-"))
    files = {**datasets.write_tpch(data / "tpch", datasets.tpch_generators(target)),
             **write_tables(data)}
    nodes = []
    # Stopped by a signal, still stop the nodes (the `finally` below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def spawn(node_args, name):
        node = spawn_node(binary, node_args, name=name)
        nodes.append(node)
        return node

    try:
        engines = start_engines(spawn, files, binary, data)
        report = run(engines, schema_of(files), queries=args.queries, seed=args.seed,
                     client_every=args.client_every, shrink_failures=not args.no_shrink,
                     progress=lambda m: print(m, file=sys.stderr, flush=True),
                     only=set(args.only) or None)
        engines.close()
    finally:
        for node in nodes:
            node.stop()
    print(report.text())
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
