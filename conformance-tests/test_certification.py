"""The certification run itself (spawn mode): the suite installed with pip runs against a node
started by hand, and deliberately broken nodes fail exactly the requirements they break.

A broken node is a real node behind `udn_conformance/broken_node.py`, a proxy that forwards
Flight SQL (as raw gRPC) and HTTP and breaks one thing. Each run is `udn-conformance run`
in a process of its own, judged by its JSON report.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

from udn_conformance import broken_node, cli, datasets, paths
from udn_conformance import roapi as roapi_server
from udn_conformance.node import table_args

pytestmark = [
    pytest.mark.spawns_node,
    pytest.mark.beyond_spec("the suite's proof that a certification run works and fails nodes that do not conform"),
]

RUN_TIMEOUT_S = 900

# What each break must fail: exactly these requirements of the classes run, every other one
# passing or (needing a node of its own) skipped. Breaks run in front of the node started by
# hand without access control, except where the name says `secured`.
BREAKS = {
    # The control: the proxy itself changes nothing, in front of the node under access control
    # with the certification grants, every class a node started by hand can show.
    "none-secured": ("core,catalog,observability,security", set()),
    # Authentication skipped while the security class is claimed: the node without access
    # control, run as if it had it. Bad tokens are served (AUTH-1), the protected table to
    # anyone (AUTH-2), with every column and to the denied subject (AUTH-3), and the hidden
    # table is listed in the catalog (AUTH-10).
    "auth-skipped": ("security", {"UDN-AUTH-1", "UDN-AUTH-2", "UDN-AUTH-3", "UDN-AUTH-10"}),
    # Wrong nullability in every schema: the metadata commands' schemas are wrong (FSQL-3), and
    # ADBC refuses them, so clients cannot list the tables (FSQL-1, DATA-1).
    "nullability": ("core", {"UDN-DATA-1", "UDN-FSQL-1", "UDN-FSQL-3"}),
    # Empty results without their schema: queries (FSQL-4) and metadata commands (FSQL-3).
    "empty-without-schema": ("core", {"UDN-FSQL-3", "UDN-FSQL-4"}),
    # Bound parameters dropped: prepared statements (FSQL-5) only.
    "ignore-parameters": ("core", {"UDN-FSQL-5"}),
    # No dct:license: not a valid DCAT-AP-NL catalog (CAT-2, CAT-3); the endpoint, which still
    # has it, no longer answers as the catalog reads, also under dataset parameters (SPARQL-1,
    # SPARQL-4).
    "catalog-without-license": ("catalog", {"UDN-CAT-2", "UDN-CAT-3", "UDN-SPARQL-1", "UDN-SPARQL-4"}),
    # Updates answered 200: the endpoint is not read-only (SPARQL-3).
    "sparql-update-accepted": ("catalog", {"UDN-SPARQL-3"}),
}


@pytest.fixture(scope="module")
def fixtures_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("certification")
    cli.write_fixtures(out, real_data=False)
    return out


@pytest.fixture(scope="module")
def node_by_hand(launcher, fixtures_dir):
    """A node serving every line of tables.txt, as a supplier starts one."""
    return launcher.spawn(table_args(datasets.table_list(fixtures_dir)), name="vendor")


@pytest.fixture(scope="module")
def secured_node_by_hand(launcher, fixtures_dir):
    """The same tables under access control: the key pair and Polder's policy for the
    certification grants that `fixtures` wrote."""
    tables = datasets.table_list(fixtures_dir)
    auth = fixtures_dir / "auth"
    args = ["--jwks", str(auth / "jwks.json"), "--issuer", cli.ISSUER, "--audience", cli.AUDIENCE,
            "--policy", str(auth / "polder-policy.toml")]  # fmt: skip
    return launcher.spawn([*args, *table_args(tables)], name="vendor")


def _signing(fixtures_dir) -> list[str]:
    return ["--signing-key", str(fixtures_dir / "auth" / "signing-key.jwk"), "--issuer", cli.ISSUER,
            "--audience", cli.AUDIENCE]  # fmt: skip


def _failed(report: dict) -> set[str]:
    return {r["id"] for r in report["requirements"] if r["status"] == "FAIL"}


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without the suite's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDN_") and k != "PYTHONPATH"}
    return {**env, **extra}


def _run(command: list[str], out_dir, flight: str, http: str, data, classes: str,
         env: dict[str, str], extra: list[str] = ()) -> tuple[int, dict, str]:  # fmt: skip
    json_path = out_dir / "report.json"
    result = subprocess.run(
        [*command, "run", "--flight", flight, "--http", http, "--data", str(data),
         "--classes", classes, "--json", str(json_path), "--report", str(out_dir / "report.md"),
         "--junit", str(out_dir / "report.xml"), *extra],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=out_dir, env=env,
    )  # fmt: skip
    assert json_path.is_file(), f"no report; exit {result.returncode}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    return result.returncode, json.loads(json_path.read_text()), result.stdout


@pytest.mark.parametrize("breaks", list(BREAKS))
def test_a_broken_node_fails_exactly_its_requirements(request, fixtures_dir, tmp_path, breaks):
    classes, expected = BREAKS[breaks]
    upstream = request.getfixturevalue("secured_node_by_hand" if "secured" in breaks else "node_by_hand")
    proxy_break = breaks if breaks in broken_node.BREAKS else "none"
    proxy = subprocess.Popen(
        [sys.executable, "-m", "udn_conformance.broken_node", "--flight", upstream.flight_url,
         "--http", upstream.http_url, "--break", proxy_break],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=paths.PACKAGE.parent,
    )  # fmt: skip
    try:
        line = proxy.stdout.readline().split()
        assert line and line[0] == "listening", f"the broken node did not start: {proxy.stderr.read()[-2000:]}"
        flight, http = (part.split("=", 1)[1] for part in line[1:3])
        code, report, stdout = _run(
            [sys.executable, "-m", "udn_conformance"], tmp_path, flight, http, fixtures_dir, classes,
            _env(PYTHONPATH=str(paths.PACKAGE.parent)),
            _signing(fixtures_dir) if "security" in classes else [],
        )
    finally:
        proxy.kill()
        proxy.wait()
    failed = _failed(report)
    failed_tests = sorted({t["id"] for t in report["tests"] if t["status"] == "failed"})
    assert failed == expected, (
        f"--break {breaks}: failed {sorted(failed)}, expected {sorted(expected)}; failed tests:\n"
        + "\n".join(failed_tests)
    )
    statuses = {r["status"] for r in report["requirements"]}
    assert statuses <= {"PASS", "FAIL", "SKIPPED"}, statuses
    if expected:
        assert code != 0, "a run with failed requirements exited 0"
        assert {c["status"] for c in report["classes"]} != {"PASS"}


# Breaks of nodes the suite starts itself (`run --node-command`): the command is
# `broken_node.py --wrap polder`, the real node behind the proxy. Each runs the tests named by
# its selection (`-k`) of the classes given; the selected requirements must fail exactly as
# listed and pass otherwise (the classes themselves are not complete in such a run, so its exit
# code is not the judge).
SPAWNED_SELECTION = {
    "privacy": "test_access_row_filters or test_access_aggregate",
    "federation": "test_a_failing_peer",
}
SPAWNED_BREAKS = {
    # The control: the wrapper and the proxy change nothing.
    "none": ("privacy,federation", set()),
    # Masks that do not hold through `SELECT *` (AUTH-9).
    "masked-column-leak": ("privacy", {"UDN-AUTH-9"}),
    # Groups smaller than k released (AUTH-8): every GROUP BY runs as a raw identity.
    "group-below-k": ("privacy", {"UDN-AUTH-8"}),
    # A federated query whose peer failed part-way answers with the rows it had: a partial
    # answer where an error naming the peer is due (FED-4), also when the peer's batches did
    # not match the schema (FED-5).
    "partial-answers": ("federation", {"UDN-FED-4", "UDN-FED-5"}),
}


@pytest.mark.parametrize("breaks", list(SPAWNED_BREAKS))
def test_a_broken_node_started_by_the_suite_fails_exactly_its_requirements(
    polder_bin, tmp_path, breaks
):
    classes, expected = SPAWNED_BREAKS[breaks]
    command = tmp_path / "broken-polder"
    command.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{paths.PACKAGE.parent}' exec '{sys.executable}' -m udn_conformance.broken_node "
        f"--wrap '{polder_bin}' --break {breaks} -- \"$@\"\n"
    )
    command.chmod(0o755)
    selection = " or ".join(SPAWNED_SELECTION[c] for c in classes.split(","))
    json_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "udn_conformance", "run", "--node-command", str(command),
         "--classes", classes, "--json", str(json_path), "--", "-k", selection],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path,
        env=_env(PYTHONPATH=str(paths.PACKAGE.parent)),
    )  # fmt: skip
    assert json_path.is_file(), f"no report; exit {result.returncode}:\n{result.stdout[-4000:]}{result.stderr[-2000:]}"
    report = json.loads(json_path.read_text())
    ran = {r["id"]: r["status"] for r in report["requirements"] if r["status"] != "NOT RUN"}
    failed = {rid for rid, status in ran.items() if status == "FAIL"}
    failed_tests = sorted({t["id"] for t in report["tests"] if t["status"] == "failed"})
    assert failed == expected, (
        f"--break {breaks}: failed {sorted(failed)}, expected {sorted(expected)}; failed tests:\n"
        + "\n".join(failed_tests)
    )
    # Every selected requirement ran (no skips: the suite starts its nodes) and the others
    # passed.
    assert {s for rid, s in ran.items() if rid not in expected} <= {"PASS"}, ran
    if "privacy" in classes:
        assert {"UDN-AUTH-8", "UDN-AUTH-9"} <= set(ran), ran
    if "federation" in classes:
        assert {"UDN-FED-4", "UDN-FED-5"} <= set(ran), ran


def test_the_installed_suite_certifies_a_node_started_by_hand(secured_node_by_hand, fixtures_dir, tmp_path):
    """`pip install ./conformance-tests` in a fresh environment, then the README's two commands:
    the installed suite writes the fixtures and the three reports, carrying the spec and shapes
    it was written against."""
    if paths.REPO is None:
        pytest.skip("installs the suite from the repository")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # A copy with the links to the spec and ontology resolved, as a clone has them, so that
    # the build's files stay out of the repository.
    source = tmp_path / "conformance-tests"
    shutil.copytree(paths.REPO / "conformance-tests", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))  # fmt: skip
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(source)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    command = [str(venv / "bin" / "udn-conformance")]
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from udn_conformance import paths; print(paths.SUITE, paths.REPO, paths.spec_file())"],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path, env=_env(),
    ).stdout.split()  # fmt: skip
    assert installed[0].startswith(str(venv)) and installed[1] == "None", installed
    assert (paths.spec_file().read_bytes() == open(installed[2], "rb").read()), "the installed spec differs"

    fixtures = tmp_path / "fixtures"
    written = subprocess.run([*command, "fixtures", "--out", str(fixtures)], capture_output=True,
                             text=True, timeout=600, env=_env())  # fmt: skip
    assert written.returncode == 0, written.stderr[-3000:]
    ours = (fixtures_dir / "tables.txt").read_text().replace(str(fixtures_dir), "DIR")
    theirs = (fixtures / "tables.txt").read_text().replace(str(fixtures), "DIR")
    assert theirs == ours, "the installed suite lists other fixtures than the repository's"

    node = secured_node_by_hand
    code, report, stdout = _run(command, tmp_path, node.flight_url, node.http_url, fixtures_dir,
                                "core,catalog,observability,security,privacy", _env(),
                                _signing(fixtures_dir))  # fmt: skip
    assert not _failed(report), f"Polder failed {_failed(report)}:\n{stdout[-4000:]}"
    assert [c["name"] for c in report["classes"]] == ["core", "catalog", "security", "privacy", "observability"]
    assert report["server"].startswith("Polder "), report["server"]
    assert "https://w3id.org/udn/spec/1.0/conf/core" in report["declared"]
    passed = {t["requirement"] for t in report["tests"] if t["status"] == "passed"}
    assert {"UDN-FSQL-1", "UDN-CAT-3", "UDN-SPARQL-1", "UDN-OPS-4", "UDN-AUTH-1", "UDN-AUTH-2",
            "UDN-AUTH-3", "UDN-AUTH-10", "UDN-AUTH-4", "UDN-AUTH-8", "UDN-AUTH-9"} <= passed  # fmt: skip
    # Requirements only a node started by the suite can show are reported as such, and keep the
    # class from passing: the exit code says so.
    skipped = {r["id"] for r in report["requirements"] if r["status"] == "SKIPPED"}
    assert (code == 0) == (not skipped), (code, skipped)
    markdown = (tmp_path / "report.md").read_text()
    assert "## Verdict per class" in markdown and "`UDN-FSQL-1`" in markdown
    junit = ElementTree.parse(tmp_path / "report.xml").getroot()
    assert int(junit.find("testsuite").get("tests")) == len({t["id"] for t in report["tests"]})


# Tables roapi 0.12.7 can load (it reads no TSV, NDJSON, GeoJSON, folder or glob).
ROAPI_TABLES = ("readings", "stations_csv", "measures_arrow", "region", "nation", "supplier",
                "customer", "part", "partsupp", "orders", "lineitem")  # fmt: skip
# A 2 MB query of one long chain overflows roapi's stack and ends the process; deselected so
# that the rest of the run judges a live server (docs/conformance/roapi-0.12.7.md).
ROAPI_CRASH = "test_bad_input.py::test_over_long_query_is_refused"


@pytest.fixture(scope="module")
def roapi(fixtures_dir, tmp_path_factory):
    """roapi 0.12.7 (PyPI) serving the fixture tables it can read."""
    tables = [f"{n}={loc}" for n, loc in datasets.table_list(fixtures_dir).items() if n in ROAPI_TABLES]
    with roapi_server.serving(tables, tmp_path_factory.mktemp("roapi") / "roapi.log") as urls:
        yield urls


def test_the_suite_refuses_to_certify_roapi(roapi, fixtures_dir, tmp_path):
    """A real Flight SQL server of another project, claiming Core: the run fails, naming (among
    others) the requirements docs/conformance/roapi-0.12.7.md explains."""
    flight, http = roapi
    json_path = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "udn_conformance", "run", "--flight", flight, "--http", http,
         "--data", str(fixtures_dir), "--classes", "core", "--json", str(json_path), "--",
         "--deselect", ROAPI_CRASH],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path,
        env=_env(PYTHONPATH=str(paths.PACKAGE.parent)),
    )  # fmt: skip
    report = json.loads(json_path.read_text())
    assert result.returncode != 0
    assert [c["status"] for c in report["classes"]] == ["FAIL"]
    failed = _failed(report)
    # Not read-only (CREATE TABLE answers), metadata schemas ADBC refuses, no parameters, errors
    # as INTERNAL, formats it cannot read, no health check, no declared classes.
    assert {"UDN-DATA-2", "UDN-DATA-5", "UDN-FSQL-3", "UDN-FSQL-5", "UDN-ERR-1", "UDN-OPS-1",
            "UDN-OPS-6"} <= failed, sorted(failed)  # fmt: skip
    passed = {r["id"] for r in report["requirements"] if r["status"] == "PASS"}
    assert not passed & {"UDN-FSQL-1", "UDN-FSQL-2"}, "roapi passed a requirement it was seen to fail"


def test_run_finds_the_fixtures_or_names_what_it_needs(fixtures_dir, tmp_path):
    """Without --data, the run uses the current folder when it holds tables.txt; otherwise,
    and for an unknown class, it stops before testing anything, saying what is missing."""
    command = [sys.executable, "-m", "udn_conformance", "run", "--flight", "grpc://127.0.0.1:1"]
    env = _env(PYTHONPATH=str(paths.PACKAGE.parent))
    found = subprocess.run([*command, "--classes", "core", "--", "--collect-only", "-q"],
                           cwd=fixtures_dir, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert found.returncode == 0, found.stdout[-2000:] + found.stderr[-2000:]
    assert "tests collected" in found.stdout
    lost = subprocess.run([*command, "--classes", "core"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert lost.returncode == 2 and "--data DIR is required" in lost.stderr, lost.stderr
    unknown = subprocess.run([*command, "--classes", "core,gold", "--data", str(fixtures_dir)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert unknown.returncode == 2 and "unknown conformance class 'gold'" in unknown.stderr, unknown.stderr


def test_run_takes_one_node_and_names_what_does_not_fit(fixtures_dir, tmp_path):
    """`--flight` (a node started by hand) and `--node-command` (nodes the suite starts) exclude
    each other; the options of one do not go with the other; the command must be executable."""
    command = [sys.executable, "-m", "udn_conformance", "run", "--classes", "core"]
    env = _env(PYTHONPATH=str(paths.PACKAGE.parent))
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    cases = [
        ([], "give either --flight URL"),
        (["--flight", "grpc://127.0.0.1:1", "--node-command", sys.executable], "give either --flight URL"),
        (["--node-command", sys.executable, "--data", str(fixtures_dir)], "--data belong to a node started by hand"),
        (["--node-command", str(script)], "not an executable file"),
    ]
    for extra, words in cases:
        result = subprocess.run([*command, *extra], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        assert result.returncode == 2 and words in result.stderr, (extra, result.stderr)
