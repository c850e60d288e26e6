"""The suite against the spec, without a node: every numbered requirement of docs/spec.md has a
test, every requirement a test names exists, and the README's requirement table is current.

The tests' markers are read from pytest's own collection of the whole suite (a `--collect-only`
run in a subprocess, so the answer does not depend on which tests this run selected).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from udn_conformance import paths, spec
from udn_conformance.report import RequirementResults

SUITE = paths.SUITE
# The suite's checks of itself: they test no node, so they name no requirement.
SELF_CHECKS = {"test_helpers.py", Path(__file__).name}


@pytest.fixture(scope="module")
def spec_file() -> Path:
    path = paths.spec_file()
    if not path.is_file():
        pytest.skip(f"spec not found at {path} (set UDN_SPEC)")
    return path


@pytest.fixture(scope="module")
def requirements(spec_file) -> dict[str, spec.Requirement]:
    return spec.load(spec_file)


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> list[dict]:
    """Every test of the suite with its markers, as pytest collects them."""
    out = tmp_path_factory.mktemp("collection") / "tests.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
            f"--udn-collection-json={out}", str(SUITE),
        ],
        cwd=SUITE, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"collection failed:\n{result.stdout[-4000:]}\n{result.stderr}"
    tests = json.loads(out.read_text())
    assert tests, "nothing collected"
    return tests


def _by_requirement(collected: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = defaultdict(list)
    for test in collected:
        for rid in test["requirements"]:
            found[rid].append(test)
    return found


def test_spec_defines_each_requirement_once(spec_file, requirements):
    ids = spec.bold_ids(spec_file.read_text(encoding="utf-8"))
    assert ids, "no **UDN-...** requirement IDs in the spec"
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"defined more than once: {duplicates}"
    assert list(requirements) == ids, "every bold ID should start a requirement's list item"
    for rid, requirement in requirements.items():
        assert spec.ID.match(rid), rid
        assert "MUST" in requirement.text or "SHOULD" in requirement.text, (
            f"{rid} states no requirement: {requirement.text!r}"
        )


def test_every_requirement_has_a_test(requirements, collected):
    covered = _by_requirement(collected)
    untested = [rid for rid in requirements if not covered.get(rid)]
    assert not untested, f"requirements of the spec without a test: {untested}"


def test_every_requirement_a_test_names_is_in_the_spec(requirements, collected):
    unknown = {
        rid: [t["nodeid"] for t in tests]
        for rid, tests in _by_requirement(collected).items()
        if rid not in requirements
    }
    assert not unknown, f"tests name requirements the spec does not define: {unknown}"


def test_markers_are_well_formed(collected):
    problems = []
    for test in collected:
        for marker in test["requirement_markers"]:
            args, kwargs = marker["args"], marker["kwargs"]
            if not args or kwargs or not all(isinstance(a, str) and spec.ID.match(a) for a in args):
                problems.append(f"{test['nodeid']}: requirement{tuple(args)} {kwargs or ''}")
        for marker in test["beyond_spec"]:
            if len(marker["args"]) != 1 or not str(marker["args"][0]).strip() or marker["kwargs"]:
                problems.append(f"{test['nodeid']}: beyond_spec needs one reason")
    assert not problems, "\n".join(problems)


def test_every_node_test_says_what_it_checks(collected):
    """Each test names its requirements, or says it checks something beyond the spec."""
    unmarked, both = [], []
    for test in collected:
        if test["file"] in SELF_CHECKS:
            continue
        if not test["requirements"] and not test["beyond_spec"]:
            unmarked.append(test["nodeid"])
        if test["requirements"] and test["beyond_spec"]:
            both.append(test["nodeid"])
    assert not unmarked, "tests with neither @requirement nor @beyond_spec:\n" + "\n".join(unmarked)
    assert not both, "tests with both @requirement and @beyond_spec:\n" + "\n".join(both)
    marked_self_checks = [
        t["nodeid"] for t in collected if t["file"] in SELF_CHECKS and t["requirements"]
    ]
    assert not marked_self_checks, f"the suite's self-checks test no node: {marked_self_checks}"


_README_ROW = re.compile(r"^\|\s*`?(UDN-[A-Z]+-\d+)`?\s*\|(.*)\|\s*$")


def test_readme_requirement_table_is_current(requirements, collected):
    """README.md's "requirement → tests" table lists, per requirement, the files testing it."""
    rows: dict[str, set[str]] = {}
    for line in (SUITE / "README.md").read_text(encoding="utf-8").splitlines():
        m = _README_ROW.match(line)
        if m:
            rows[m.group(1)] = set(re.findall(r"test_\w+\.py", m.group(2)))
    expected = {
        rid: {t["file"] for t in tests} for rid, tests in _by_requirement(collected).items()
    }
    assert list(rows) == list(requirements), (
        f"README table rows {list(rows)} are not the spec's requirements in order"
    )
    stale = {
        rid: {"README": sorted(rows[rid]), "markers": sorted(expected.get(rid, set()))}
        for rid in rows
        if rows[rid] != expected.get(rid, set())
    }
    assert not stale, f"README table differs from the markers: {stale}"


def _report(nodeid: str, when: str, outcome: str, xfail: bool = False) -> SimpleNamespace:
    r = SimpleNamespace(
        nodeid=nodeid,
        when=when,
        passed=outcome == "passed",
        failed=outcome == "failed",
        skipped=outcome == "skipped",
    )
    if xfail:
        r.wasxfail = "reason"
    return r


def test_requirement_summary_counts_outcomes():
    """The end-of-run table: a failure anywhere fails the requirement; skips alone are SKIPPED."""
    results = RequirementResults(
        spec_file=Path("spec.md"),
        requirements={
            rid: spec.Requirement(rid, "A node MUST do it.")
            for rid in ("UDN-A-1", "UDN-A-2", "UDN-A-3", "UDN-A-4", "UDN-A-5")
        },
    )
    results.tests = {
        "ok": ["UDN-A-1", "UDN-A-2"],
        "teardown_error": ["UDN-A-2"],
        "skipped": ["UDN-A-3"],
        "known_gap": ["UDN-A-4"],
        "also_ok": ["UDN-A-4"],
        "deselected": ["UDN-A-5"],
    }
    reports = [
        _report("ok", "setup", "passed"),
        _report("ok", "call", "passed"),
        _report("ok", "teardown", "passed"),
        _report("teardown_error", "call", "passed"),
        _report("teardown_error", "teardown", "failed"),
        _report("skipped", "setup", "skipped"),
        _report("known_gap", "call", "skipped", xfail=True),
        _report("also_ok", "call", "passed"),
    ]
    for r in reports:
        results.pytest_runtest_logreport(r)
    rows = {rid: (status, dict(counts)) for rid, status, counts, _ in results.rows()}
    assert rows == {
        "UDN-A-1": ("PASS", {"passed": 1}),
        "UDN-A-2": ("FAIL", {"passed": 1, "failed": 1}),
        "UDN-A-3": ("SKIPPED", {"skipped": 1}),
        "UDN-A-4": ("FAIL", {"xfailed": 1, "passed": 1}),
        "UDN-A-5": ("NOT RUN", {}),
    }


def test_every_requirement_is_in_exactly_one_conformance_class(spec_file, requirements):
    classes = spec.load_classes(spec_file)
    assert set(classes) == {
        "core", "catalog", "federation", "security", "privacy", "observability", "spatial", "sensors"
    }
    for name, cls in classes.items():
        assert cls.uri == spec.CLASS_BASE + name
        assert set(cls.depends_on) <= set(classes), (name, cls.depends_on)
        # No class depends on itself, through others either.
        assert name not in spec.with_dependencies(classes, list(cls.depends_on)), name
    owners: dict[str, list[str]] = defaultdict(list)
    for name, cls in classes.items():
        for rid in cls.requirements:
            owners[rid].append(name)
    assert set(owners) == set(requirements), (
        f"in no class: {sorted(set(requirements) - set(owners))}; "
        f"not in the spec: {sorted(set(owners) - set(requirements))}"
    )
    twice = {rid: names for rid, names in owners.items() if len(names) > 1}
    assert not twice, twice
    assert spec.with_dependencies(classes, ["privacy"]) == ["core", "security", "privacy"]
    assert spec.with_dependencies(classes, ["sensors"]) == ["core", "catalog", "sensors"]


def test_class_verdicts_need_every_requirement_to_pass(requirements):
    """The certification reports: a class passes only when each of its requirements passed; a
    failed, skipped or unrun requirement fails it."""
    from udn_conformance.report import RunInfo, class_verdicts, write_json, write_markdown

    classes = {
        "core": spec.ConformanceClass("core", "Core", spec.CLASS_BASE + "core", ("UDN-OPS-1", "UDN-OPS-2"), ()),
        "observability": spec.ConformanceClass(
            "observability", "Observability", spec.CLASS_BASE + "observability", ("UDN-OPS-4",), ("core",)
        ),
    }
    results = RequirementResults(spec_file=Path("spec.md"), requirements=requirements)
    results.tests = {"a": ["UDN-OPS-1"], "b": ["UDN-OPS-2"], "c": ["UDN-OPS-4"], "d": []}
    results.outcomes = {"a": "passed", "b": "passed", "c": "skipped", "d": "passed"}
    assert class_verdicts(results, classes, ["core", "observability"]) == {
        "core": "PASS",
        "observability": "FAIL",
    }
    results.outcomes["b"] = "failed"
    assert class_verdicts(results, classes, ["core"]) == {"core": "FAIL"}
    info = RunInfo("grpc://node:1", None, "2026-12-07T00:00:00Z", "UDN 1.0", ["core", "observability"], None, None)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        md, js = Path(tmp) / "r.md", Path(tmp) / "r.json"
        write_markdown(md, results, classes, info)
        write_json(js, results, classes, info)
        text = md.read_text()
        assert "| Core | `https://w3id.org/udn/spec/1.0/conf/core` | **FAIL** |" in text
        assert "Overall: **FAIL**" in text and "`b`" in text
        document = json.loads(js.read_text())
        assert {"id": "a", "requirement": "UDN-OPS-1", "status": "passed"} in document["tests"]
        assert {"id": "d", "requirement": None, "status": "passed"} in document["tests"]
        assert [c["status"] for c in document["classes"]] == ["FAIL", "FAIL"]


def test_a_claimed_class_that_does_not_pass_fails_the_run(tmp_path):
    """`--classes` with tests deselected: the class cannot pass, so the run's exit code is 1
    even though every test that ran passed, and the reports say why."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    report, document = tmp_path / "report.md", tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE),
            "--classes", "core", "-k", "test_helpers and wkb_point",
            f"--udn-report={report}", f"--udn-json={document}",
        ],
        cwd=SUITE, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:]
    assert "| Core | `https://w3id.org/udn/spec/1.0/conf/core` | **FAIL** |" in report.read_text()
    assert json.loads(document.read_text())["classes"] == [
        {"name": "core", "uri": "https://w3id.org/udn/spec/1.0/conf/core", "status": "FAIL"}
    ]
    bad = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(SUITE), "--classes", "gold"],
        cwd=SUITE, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown conformance class 'gold'" in bad.stderr + bad.stdout
