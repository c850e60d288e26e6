"""Fixtures: the node(s) under test and the files they serve.

Spawn mode (default): nodes are started from `POLDER_BIN`, else
`$CARGO_TARGET_DIR/debug/polder` (default `target/debug/polder`), each on 127.0.0.1:0.
Remote mode (`UDN_FLIGHT_URL` set): every test talks to that node, which must serve the tables
that `udn-conformance fixtures --out DIR` lists in DIR/tables.txt, with `UDN_DATA_DIR=DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from udn_conformance import datasets, paths, rdf, spec
from udn_conformance.client import query_rows
from udn_conformance.compare import assert_same_rows
from udn_conformance.node import Node, NodeStartError, remote_from_env, spawn, table_args
from udn_conformance.reference import Reference
from udn_conformance.report import RequirementResults, RunInfo, dump_collection, write_json, write_markdown

CATALOG = "conformance"
RESULTS = pytest.StashKey[RequirementResults]()
SHACL_REPORTS = pytest.StashKey[list]()
CLAIMED = pytest.StashKey[list]()
VERDICTS = pytest.StashKey[tuple]()  # (class -> verdict, the spec's classes), once judged


def pytest_addoption(parser):
    group = parser.getgroup("udn", "Urban Data Node conformance")
    group.addoption(
        "--requirement",
        action="append",
        default=[],
        metavar="ID",
        help="run only the tests of this spec requirement (repeatable), e.g. "
        "--requirement UDN-FSQL-5",
    )
    group.addoption(
        "--classes",
        default=None,
        metavar="NAMES",
        help="conformance classes the node claims, comma-separated (core, catalog, federation, "
        "security, privacy, observability, spatial, sensors): runs the tests of their "
        "requirements and of the classes they depend on, and fails the run unless every one of "
        "them passes",
    )
    group.addoption(
        "--claim",
        default=None,
        metavar="NAMES",
        help="like --classes, but runs every selected test (the suite's own checks included): "
        "judges these classes and fails the run unless every one of them passes",
    )
    group.addoption("--udn-report", metavar="FILE.md", default=None, help="write the certification report as Markdown")
    group.addoption("--udn-json", metavar="FILE.json", default=None, help="write the certification report as JSON")
    group.addoption(
        "--udn-collection-json",
        metavar="PATH",
        default=None,
        help="write every collected test with its requirement markers to PATH as JSON",
    )


def pytest_configure(config):
    # Registered as a plugin: it receives every test report (pytest_runtest_logreport).
    results = RequirementResults.for_spec(paths.spec_file())
    config.stash[RESULTS] = results
    config.stash[SHACL_REPORTS] = []
    config.pluginmanager.register(results, "udn-requirement-results")
    config.addinivalue_line(
        "markers",
        "spawns_node: starts its own node process with specific files or arguments; "
        "skipped against a remote node (UDN_FLIGHT_URL)",
    )
    config.addinivalue_line("markers", "shared_data: needs the real open data in ../shared/data")


def pytest_collection_modifyitems(config, items):
    for item in items:
        ids = spec.marker_ids(item)
        item.extra_keyword_matches.update(ids)  # `-k UDN-FSQL-5` works too
        item.user_properties.extend(("requirement", rid) for rid in ids)  # in --junitxml
    wanted = list(config.getoption("requirement"))
    classes = spec.load_classes(paths.spec_file())
    if config.getoption("classes") and config.getoption("claim"):
        raise pytest.UsageError("--claim and --classes exclude each other")
    claimed: list[str] = []
    for option in ("classes", "claim"):
        if config.getoption(option):
            try:
                claimed = spec.claimed(classes, config.getoption(option))
            except KeyError as err:
                raise pytest.UsageError(f"--{option}: {err.args[0]}") from None
    if config.getoption("classes"):  # --claim judges without narrowing the selection
        wanted += [rid for name in claimed for rid in classes[name].requirements]
    config.stash[CLAIMED] = claimed
    if wanted:
        unknown = [w for w in wanted if not spec.ID.match(w)]
        if unknown:
            raise pytest.UsageError(f"--requirement {unknown[0]!r} is not an ID like UDN-FSQL-5")
        known = config.stash[RESULTS].requirements
        if known and set(wanted) - set(known):
            raise pytest.UsageError(
                f"--requirement {sorted(set(wanted) - set(known))} not in the spec; "
                f"its requirements are {', '.join(known)}"
            )
        selected, deselected = [], []
        for item in items:
            (selected if set(wanted) & set(spec.marker_ids(item)) else deselected).append(item)
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected
    if os.environ.get("UDN_FLIGHT_URL"):
        skip = pytest.mark.skip(
            reason="starts its own node with specific files or arguments; not possible against "
            "the remote node in UDN_FLIGHT_URL"
        )
        for item in items:
            if "spawns_node" in item.keywords:
                item.add_marker(skip)


def pytest_collection_finish(session):
    session.config.stash[RESULTS].collected(session.items)
    out = session.config.getoption("udn_collection_json")
    if out:
        dump_collection(session.items, Path(out))


def _run_info(config) -> RunInfo:
    """The node, its declaration and its server's name, for the certification report."""
    import datetime

    import requests

    flight = os.environ.get("UDN_FLIGHT_URL")
    http = os.environ.get("UDN_HTTP_URL")
    spec_file = paths.spec_file()
    version = next(
        (line.strip() for line in spec_file.read_text(encoding="utf-8").splitlines() if line.startswith("Version ")),
        "unknown version",
    )
    declared = server = None
    if http:
        try:
            declared = requests.get(f"{http}/conformance", timeout=10).json().get("conformsTo")
        except (requests.RequestException, ValueError, AttributeError):
            declared = None
    if flight:
        try:
            from udn_conformance import flightsql

            info = flightsql.sql_info(flightsql.client(Node(flight_url=flight, http_url=http, catalog=None)), [0, 1])
            server = f"{info.get(0)} {info.get(1)}"
        except Exception:  # noqa: BLE001 - the report says what could not be read
            server = None
    return RunInfo(
        node=flight or f"nodes started by the suite from {os.environ.get('POLDER_BIN', 'target/debug/polder')}",
        http=http,
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        spec_version=f"UDN {version.removeprefix('Version ').rstrip('.')} ({spec_file.name})",
        classes=config.stash[CLAIMED],
        declared=declared,
        server=server,
    )


def pytest_sessionfinish(session, exitstatus):
    """Writes the certification reports; a claimed class that did not pass fails the run."""
    config = session.config
    if config.option.collectonly or CLAIMED not in config.stash:
        return
    markdown, as_json = config.getoption("udn_report"), config.getoption("udn_json")
    claimed = config.stash[CLAIMED]
    if not (markdown or as_json or claimed):
        return
    results = config.stash[RESULTS]
    classes = spec.load_classes(paths.spec_file())
    info = _run_info(config)
    if markdown:
        write_markdown(Path(markdown), results, classes, info)
    if as_json:
        write_json(Path(as_json), results, classes, info)
    from udn_conformance.report import class_verdicts

    verdicts = class_verdicts(results, classes, claimed)
    config.stash[VERDICTS] = verdicts, classes
    if claimed and any(v != "PASS" for v in verdicts.values()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Per-requirement pass/fail counts: which numbered requirements the node met in this run."""
    if not config.option.collectonly:
        config.stash[RESULTS].write(terminalreporter)
        verdicts, classes = config.stash.get(VERDICTS, ({}, {}))
        if verdicts:
            status = {rid: st for rid, st, _, _ in config.stash[RESULTS].rows()}
            terminalreporter.section("conformance classes claimed")
            for name, verdict in verdicts.items():
                missing = [r for r in classes[name].requirements if status.get(r) != "PASS"]
                why = f" (not passed: {', '.join(missing)})" if missing else ""
                terminalreporter.write_line(f"{classes[name].title}: {verdict}{why}")
        reports = config.stash[SHACL_REPORTS]
        if reports:
            terminalreporter.section(
                "DCAT-AP 3.0.1 / DCAT-AP-NL 3.0 SHACL results (violations fail UDN-CAT-3; "
                "warnings: recommended properties)"
            )
            for report in reports:
                for line in report.summary_lines():
                    terminalreporter.write_line(line)


class Launcher:
    """Starts nodes (once per distinct table set) or hands out the remote node."""

    def __init__(self, binary: Path | None, remote: Node | None):
        self.binary = binary
        self.remote = remote
        self._cache: dict[tuple, Node | NodeStartError] = {}
        self._owned: list[Node] = []

    def node(self, tables: dict[str, str | Path]) -> Node:
        """A node serving `tables` (shared between tests asking for the same tables)."""
        if self.remote is not None:
            return self.remote
        key = tuple(sorted((k, str(v)) for k, v in tables.items()))
        cached = self._cache.get(key)
        if cached is None or (isinstance(cached, Node) and not cached.alive()):
            try:
                cached = self.spawn(table_args(tables))
                cached.tables = {k: str(v) for k, v in tables.items()}
            except NodeStartError as e:
                cached = e
            self._cache[key] = cached
        if isinstance(cached, NodeStartError):
            pytest.fail(
                f"node serving {sorted(tables)} did not start: {cached}\n"
                f"stderr:\n{cached.stderr[-4000:]}",
                pytrace=False,
            )
        return cached

    def spawn(self, args: list[str], **kwargs) -> Node:
        """A fresh node process of its own; stopped at the end of the session at the latest."""
        if self.remote is not None:
            pytest.skip("needs to start its own node; not possible with UDN_FLIGHT_URL")
        node = spawn(self.binary, args, name=kwargs.pop("name", CATALOG), **kwargs)
        self._owned.append(node)
        return node

    def close(self):
        for node in self._owned:
            node.stop()


@pytest.fixture(scope="session")
def remote() -> Node | None:
    return remote_from_env()


@pytest.fixture(scope="session")
def polder_bin(remote) -> Path | None:
    if remote is not None:
        return None
    configured = os.environ.get("POLDER_BIN")
    target = paths.target_dir()
    binary = Path(configured) if configured else target / "debug" / "polder" if target else None
    if binary is None or not binary.is_file():
        pytest.fail(
            f"no node binary at {binary}: build it (cargo build -p polder-node), set POLDER_BIN, "
            "or point UDN_FLIGHT_URL at a running node",
            pytrace=False,
        )
    return binary


@pytest.fixture(scope="session")
def launcher(polder_bin, remote):
    launcher = Launcher(polder_bin, remote)
    yield launcher
    launcher.close()


@pytest.fixture(scope="session")
def data_dir(remote, tmp_path_factory) -> Path:
    """Where the conformance files live (generated here, or prepared by the vendor)."""
    if remote is not None:
        configured = os.environ.get("UDN_DATA_DIR")
        if not configured:
            pytest.fail(
                "UDN_FLIGHT_URL is set but UDN_DATA_DIR is not: run "
                "`udn-conformance fixtures --out DIR`, load its tables into the node, "
                "and set UDN_DATA_DIR=DIR",
                pytrace=False,
            )
        return Path(configured)
    return tmp_path_factory.mktemp("udn-data")


@pytest.fixture(scope="session")
def generated(data_dir, remote) -> dict[str, Path]:
    """Generated files for format and protocol tests: table name -> location."""
    if remote is not None:
        tables = datasets.generated_locations(data_dir / "generated")
        missing = [str(p) for p in tables.values() if "*" not in str(p) and not p.exists()]
        if missing:
            pytest.fail(f"UDN_DATA_DIR lacks {missing}; run `udn-conformance fixtures --out DIR`", pytrace=False)
        return tables
    return datasets.write_generated(data_dir / "generated")


@pytest.fixture(scope="session")
def tpch(data_dir, remote) -> dict[str, Path]:
    """TPC-H SF 0.01 parquet files: table name -> file."""
    out = data_dir / "tpch"
    if remote is not None:
        return {t: out / f"{t}.parquet" for t in datasets.TPCH_TABLES}
    generators = datasets.tpch_generators(paths.target_dir())
    if not generators:
        pytest.skip(
            "no TPC-H generator: neither target/debug/polder-bench nor tpchgen-cli "
            "(pip install -r conformance-tests/requirements.txt) is available"
        )
    return datasets.write_tpch(out, generators)


@pytest.fixture(scope="session")
def main_tables(tpch, generated) -> dict[str, Path]:
    return {**tpch, "readings": generated["readings"]}


@pytest.fixture(scope="session")
def main_node(launcher, main_tables) -> Node:
    """The node serving TPC-H and `readings` that most tests query."""
    return launcher.node(main_tables)


@pytest.fixture(scope="session")
def main_ref(main_tables) -> Reference:
    return Reference(main_tables)


@pytest.fixture(scope="session")
def catalog(main_node) -> str:
    """The node's SQL catalog: the node name (UDN_CATALOG or discovered for a remote node)."""
    if main_node.catalog:
        return main_node.catalog
    with main_node.connect() as conn:
        objects = conn.adbc_get_objects(depth="tables", table_name_filter="lineitem").read_all()
    for cat in objects.to_pylist():
        for schema in cat["catalog_db_schemas"] or []:
            if any(t["table_name"] == "lineitem" for t in schema["db_schema_tables"] or []):
                return cat["catalog_name"]
    pytest.fail("could not find the catalog holding lineitem; set UDN_CATALOG", pytrace=False)


@pytest.fixture(scope="session")
def shacl_reports(request) -> list:
    """SHACL reports of the catalogs validated in this run, printed at the end of the run."""
    return request.config.stash[SHACL_REPORTS]


@pytest.fixture(scope="session")
def main_http(main_node) -> str:
    """The main node's HTTP base URL (`UDN_HTTP_URL` for a remote node; skips without it)."""
    return rdf.http_url(main_node)


@pytest.fixture(scope="session")
def main_catalog(main_http) -> rdf.Catalog:
    """The main node's `GET /catalog` (Turtle), fetched once."""
    return rdf.catalog_of(main_http)


@pytest.fixture(scope="session")
def main_conn(main_node):
    """One ADBC connection to the main node, reused by read-only tests."""
    conn = main_node.connect()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def shared_data(remote, data_dir) -> Path:
    path = paths.shared_data()
    if path is None:
        pytest.skip(
            "real open data not found (set UDN_SHARED_DATA or provide ../shared/data with "
            "SOURCES.md)"
        )
    if remote is not None:
        if not set(datasets.SHARED_TABLES) <= set(datasets.table_list(data_dir)):
            pytest.skip("the fixtures the remote node serves were written without the real open data")
    return path


@pytest.fixture
def assert_healthy(main_node, main_ref):
    """Check that a node (the main node by default) still answers a normal query correctly."""

    def check(node: Node | None = None, ref: Reference | None = None, sql: str | None = None):
        node = node or main_node
        ref = ref or main_ref
        sql = sql or "SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM readings"
        assert node.alive(), (
            f"node exited with {node.process.returncode}:\n{node.stderr_text()[-3000:]}"
        )
        with node.connect() as conn:
            assert_same_rows(query_rows(conn, sql), ref.rows(sql), context="health query")

    return check
