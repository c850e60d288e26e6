"""Per-requirement results: which UDN requirements a run showed a node to meet.

conftest.py registers this as a plugin that sees every test report, and prints the table at
the end of the run (`pytest_terminal_summary`). A requirement FAILs when any test marked with
it failed (an error in a fixture counts, and so does an expected failure: a known gap of the
node, see `known.py`); it PASSes when at least one of its
tests passed and none failed; SKIPPED means all its tests were skipped (e.g. `spawns_node`
tests against a remote node); NOT RUN means none of its tests was selected.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import spec

PASSED, FAILED, XFAILED, SKIPPED = "passed", "failed", "xfailed", "skipped"
KINDS = (PASSED, FAILED, XFAILED, SKIPPED)


@dataclass(eq=False)  # hashable: registered as a pytest plugin
class RequirementResults:
    spec_file: Path
    requirements: dict[str, spec.Requirement]
    # nodeid -> requirement IDs, and the tests that check no numbered requirement.
    tests: dict[str, list[str]] = field(default_factory=dict)
    beyond_spec: set[str] = field(default_factory=set)
    outcomes: dict[str, str] = field(default_factory=dict)
    # nodeid -> why it failed or was skipped (the first line of the message), the evidence.
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_spec(cls, path: Path) -> RequirementResults:
        requirements = spec.load(path) if path.is_file() else {}
        return cls(spec_file=path, requirements=requirements)

    def collected(self, items) -> None:
        for item in items:
            self.tests[item.nodeid] = spec.marker_ids(item)
            if item.get_closest_marker("beyond_spec") is not None:
                self.beyond_spec.add(item.nodeid)

    def pytest_runtest_logreport(self, report) -> None:
        """Fold one phase report (setup, call, teardown) into the test's outcome."""
        if report.nodeid not in self.tests:
            return
        if report.failed:
            outcome = FAILED
        elif report.skipped and hasattr(report, "wasxfail"):
            outcome = XFAILED
        elif report.skipped:
            outcome = SKIPPED
        elif report.when == "call":
            outcome = PASSED
        else:
            return
        if self.outcomes.get(report.nodeid) not in (FAILED, XFAILED):
            self.outcomes[report.nodeid] = outcome
            reason = _reason(report)
            if reason:
                self.reasons[report.nodeid] = reason

    def rows(self) -> list[tuple[str, str, Counter, list[str]]]:
        """(requirement, status, outcome counts, failed tests) in spec order."""
        ids = list(self.requirements)
        extra = sorted({r for rs in self.tests.values() for r in rs} - set(ids), key=spec.sort_key)
        rows = []
        for rid in ids + extra:
            nodeids = [n for n, rs in self.tests.items() if rid in rs and n in self.outcomes]
            counts = Counter(self.outcomes[n] for n in nodeids)
            failed = [n for n in nodeids if self.outcomes[n] in (FAILED, XFAILED)]
            if counts[FAILED] or counts[XFAILED]:
                status = "FAIL"
            elif counts[PASSED]:
                status = "PASS"
            elif counts[SKIPPED]:
                status = "SKIPPED"
            else:
                status = "NOT RUN"
            rows.append((rid, status, counts, failed))
        return rows

    def write(self, tr) -> None:
        """Print the per-requirement table to pytest's terminal reporter."""
        if not any(self.tests[n] for n in self.outcomes):
            return  # no test of a requirement ran (e.g. only the suite's own helpers)
        source = self.spec_file if self.requirements else "test markers; spec not found"
        tr.write_sep("=", f"UDN requirements ({source})")
        rows = self.rows()
        for rid, status, counts, failed in rows:
            detail = ", ".join(f"{counts[k]} {k}" for k in KINDS if counts[k])
            known = self.requirements.get(rid)
            text = known.summary(60) if known else "NOT IN THE SPEC"
            colour = {"PASS": {"green": True}, "FAIL": {"red": True, "bold": True}}.get(status, {})
            tr.write(f"{rid:<11} ")
            tr.write(f"{status:<8}", **colour)
            tr.write_line(f" {detail or 'no test selected':<30} {text}")
            for nodeid in failed[:5]:
                label = "known gap" if self.outcomes[nodeid] == XFAILED else "failed"
                tr.write_line(f"    {label}: {nodeid}")
            if len(failed) > 5:
                tr.write_line(f"    ... and {len(failed) - 5} more")
        statuses = Counter(status for _, status, _, _ in rows)
        order = ("PASS", "FAIL", "SKIPPED", "NOT RUN")
        summary = ", ".join(f"{statuses[s]} {s.lower()}" for s in order if statuses[s])
        tr.write_line(f"{len(rows)} requirements: {summary}")
        beyond = Counter(self.outcomes[n] for n in self.beyond_spec if n in self.outcomes)
        if beyond:
            tr.write_line(
                "tests beyond the spec (Polder-specific or suite self-checks): "
                + ", ".join(f"{beyond[k]} {k}" for k in KINDS if beyond[k])
            )


def _reason(report) -> str | None:
    """A failure's or skip's message on one line, cut to 300 characters."""
    if not (report.failed or report.skipped):
        return None
    longrepr = getattr(report, "longrepr", None)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (file, line, reason)
        message = str(longrepr[2]).removeprefix("Skipped: ")
    else:
        crash = getattr(longrepr, "reprcrash", None)
        message = crash.message if crash is not None else str(longrepr or "")
    if hasattr(report, "wasxfail"):
        message = f"known gap: {report.wasxfail}"
    line = " ".join(message.split())
    return line[:297] + "..." if len(line) > 300 else line or None


def dump_collection(items, path: Path) -> None:
    """Write each collected test's requirement IDs as JSON (for test_spec_coverage.py)."""
    tests = []
    for item in items:
        tests.append(
            {
                "nodeid": item.nodeid,
                "file": Path(str(item.fspath)).name,
                "requirements": spec.marker_ids(item),
                "requirement_markers": [
                    {"args": list(m.args), "kwargs": dict(m.kwargs)}
                    for m in item.iter_markers("requirement")
                ],
                "beyond_spec": [
                    {"args": list(m.args), "kwargs": dict(m.kwargs)}
                    for m in item.iter_markers("beyond_spec")
                ],
            }
        )
    path.write_text(json.dumps(tests, indent=1, default=repr), encoding="utf-8")


@dataclass
class RunInfo:
    """What a certification report says about its run."""

    node: str  # the Flight SQL URL, or what was spawned
    http: str | None
    date: str  # UTC, ISO 8601
    spec_version: str
    classes: list[str]  # claimed, with their dependencies
    declared: list[str] | None  # the node's own GET /conformance, if it could be read
    server: str | None  # server name and version, from the node


def class_verdicts(results: RequirementResults, classes: dict, claimed: list[str]) -> dict[str, str]:
    """PASS when every requirement of the class passed; FAIL otherwise (a requirement that
    failed, was skipped or was not run is no evidence)."""
    status = {rid: s for rid, s, _, _ in results.rows()}
    return {
        name: "PASS" if all(status.get(r) == "PASS" for r in classes[name].requirements) else "FAIL"
        for name in claimed
    }


def write_json(path: Path, results: RequirementResults, classes: dict, info: RunInfo) -> None:
    tests = []
    for nodeid, ids in results.tests.items():
        outcome = results.outcomes.get(nodeid, "not run")
        for rid in ids or [None]:
            entry = {"id": nodeid, "requirement": rid, "status": outcome}
            if nodeid in results.reasons and outcome != PASSED:
                entry["reason"] = results.reasons[nodeid]
            tests.append(entry)
    verdicts = class_verdicts(results, classes, info.classes)
    document = {
        "node": info.node,
        "http": info.http,
        "server": info.server,
        "date": info.date,
        "specification": info.spec_version,
        "classes": [
            {"name": n, "uri": classes[n].uri, "status": verdicts[n]} for n in info.classes
        ],
        "declared": info.declared,
        "requirements": [
            {
                "id": rid,
                "uri": f"https://w3id.org/udn/spec/1.0/req/{rid.lower()}",
                "status": status,
                "counts": dict(counts),
            }
            for rid, status, counts, _ in results.rows()
            if not info.classes or any(rid in classes[n].requirements for n in info.classes)
        ],
        "tests": tests,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("`", "'").replace("\n", " ")


def write_markdown(path: Path, results: RequirementResults, classes: dict, info: RunInfo) -> None:
    """A report a procurement officer can read: the node, the run, each class claimed and each
    of its requirements with the tests that are its evidence."""
    verdicts = class_verdicts(results, classes, info.classes)
    rows = {rid: (status, counts, failed) for rid, status, counts, failed in results.rows()}
    lines = [
        "# UDN conformance report",
        "",
        "| | |",
        "|---|---|",
        f"| node (Flight SQL) | `{info.node}` |",
        f"| node (HTTP) | `{info.http or 'not given'}` |",
        f"| server | {info.server or 'not reported'} |",
        f"| date (UTC) | {info.date} |",
        f"| specification | {info.spec_version} |",
        f"| classes claimed | {', '.join(classes[n].title for n in info.classes) or 'none given'} |",
        "| the node declares | "
        + (", ".join(f"`{u}`" for u in info.declared) if info.declared is not None else "could not be read (GET /conformance)")
        + " |",
        "",
        "## Verdict per class",
        "",
        "| class | URI | result |",
        "|---|---|---|",
    ]
    for name in info.classes:
        lines.append(f"| {classes[name].title} | `{classes[name].uri}` | **{verdicts[name]}** |")
    overall = "PASS" if info.classes and all(v == "PASS" for v in verdicts.values()) else "FAIL"
    lines += [
        "",
        f"Overall: **{overall}**. A class passes when every one of its requirements passed; a "
        "requirement passes when at least one of its tests passed and none failed. A skipped or "
        "unrun requirement is not evidence.",
    ]
    for name in info.classes:
        lines += ["", f"## {classes[name].title}", "", "| requirement | result | evidence |", "|---|---|---|"]
        for rid in classes[name].requirements:
            status, counts, failed = rows.get(rid, ("NOT RUN", Counter(), []))
            evidence = ", ".join(f"{counts[k]} {k}" for k in KINDS if counts[k]) or "no test run"
            if failed:
                evidence += "; failed: " + ", ".join(f"`{n}`" for n in failed[:5])
                if len(failed) > 5:
                    evidence += f" and {len(failed) - 5} more"
            elif status == "SKIPPED":
                why = sorted({results.reasons.get(n, "") for n, ids in results.tests.items()
                              if rid in ids and results.outcomes.get(n) == SKIPPED} - {""})  # fmt: skip
                if why:
                    evidence += "; " + "; ".join(_cell(w) for w in why[:2])
            text = results.requirements.get(rid)
            summary = text.summary(70) if text else ""
            lines.append(f"| `{rid}` {summary} | {status} | {evidence} |")
    failures = [
        n for n, ids in results.tests.items()
        if results.outcomes.get(n) in (FAILED, XFAILED)
        and any(rid in classes[c].requirements for c in info.classes for rid in ids)
    ]  # fmt: skip
    if failures:
        lines += ["", "## Failed tests", "", "| test | requirements | why |", "|---|---|---|"]
        for nodeid in failures:
            why = _cell(results.reasons.get(nodeid, ""))
            lines.append(f"| `{nodeid}` | {', '.join(results.tests[nodeid])} | {why} |")
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
