"""The audit log (UDN-AUTH-7): every query recorded without its literals, in a hash chain with
signed checkpoints that `polder audit verify` checks; bounded against floods; personal data
refused while the log cannot be written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
import time

import adbc_driver_manager
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    adbc,
    aggregate_policy,
    auth_args,
    DISTRICTS,
    duckdb_groups,
    guarded_node,
    idp,
    K_SENSORS,
    PER_NEIGHBOURHOOD,
    query_one,
    refused,
    sensor_files,
    token,
)
from udn_conformance.errors import adbc_grpc_status

# The audit log is a file of the node's: the suite reads it where it starts the node.
pytestmark = pytest.mark.spawns_node

AUDITED_POLICY = """
[[dataset]]
name = "air_quality"
public = true

[[dataset]]
name = "traffic_counts"
personal = true
  [[dataset.rule]]
  groups = ["mobility"]
  access = "raw"
  deny_columns = ["v85"]
"""


def audited_node(launcher, idp, polder_bin, directory, log_path):
    keys = directory / "audit-keys"
    if not (keys / "jwks.json").exists():
        subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                       check=True, timeout=60)  # fmt: skip
    args = auth_args(idp, AUDITED_POLICY, "audited")
    args += ["--audit-log", str(log_path), "--audit-key", str(keys / "token-key.pem")]
    return launcher.spawn(args, name="utrecht"), keys / "jwks.json"


def verify(polder_bin, log_path, jwks, *flags):
    return subprocess.run(
        [polder_bin, "audit", "verify", "--log", log_path, "--jwks", jwks, *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def rehash_without_checkpoints(text: str) -> str:
    """What whoever can write the log can do without the key: drop its checkpoints and
    recompute the chain (SHA-256 over the previous hash and the record's JSON, keys sorted)."""
    import hashlib
    import json

    prev, out = bytes(32), []
    records = [json.loads(line) for line in text.splitlines()]
    for seq, record in enumerate((r for r in records if r["kind"] != "checkpoint"), start=1):
        record.pop("hash")
        record["seq"], record["prev"] = seq, prev.hex()
        canonical = json.dumps(dict(sorted(record.items())), separators=(",", ":"),
                               ensure_ascii=False)  # fmt: skip
        prev = hashlib.sha256(prev + canonical.encode()).digest()
        record["hash"] = prev.hex()
        out.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(out) + "\n"


@pytest.mark.requirement("UDN-AUTH-7")
def test_every_query_is_audited_without_its_literals(launcher, idp, polder_bin, tmp_path):
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    import hashlib
    import json
    import signal

    log_path = tmp_path / "audit" / "audit.jsonl"
    node, jwks = audited_node(launcher, idp, polder_bin, tmp_path, log_path)
    secret = "BU0344SECRET"
    sql = f"SELECT count(*) FROM traffic_counts WHERE neighbourhood_code <> '{secret}' AND car > 3"
    analyst = token(idp, sub="alice", groups=["mobility"], purpose="research")
    rows, _ = query_one(node, analyst, sql)
    assert rows[0][0] > 0
    refused(node, token(idp, sub="eve", groups=["parks"]), "SELECT * FROM traffic_counts")
    query_one(node, None, "SELECT count(*) FROM air_quality")
    assert node.stop(signal.SIGTERM) == 0

    text = log_path.read_text()
    assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    started = [r for r in records if r["kind"] == "query" and r["subject"] == "alice"]
    assert len(started) == 1, records
    query = started[0]
    assert query["purpose"] == "research"
    assert query["statement_sha256"] == hashlib.sha256(sql.encode()).hexdigest()
    assert "?" in query["statement"] and "3" not in query["statement"]
    [dataset] = query["datasets"]
    assert dataset["dataset"] == "utrecht.public.traffic_counts"
    assert dataset["rule"] == 1 and dataset["denied_columns"] == ["v85"]
    assert dataset["personal"] is True
    [end] = [r for r in records if r["kind"] == "query_end" and r["query"] == query["seq"]]
    assert end["outcome"] == "ok" and end["rows_out"] == 1
    assert any(r["kind"] == "refused" and r["subject"] == "eve" and r["outcome"] == "forbidden"
               for r in records)  # fmt: skip
    assert any(r["kind"] == "query" and r["subject"] == "anonymous" for r in records)
    assert records[-1]["kind"] == "checkpoint"

    ok = verify(polder_bin, log_path, jwks)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr
    lines = text.splitlines(keepends=True)
    tampered = {
        "changed": text.replace('"subject":"eve"', '"subject":"bob"'),
        "removed": "".join(lines[:1] + lines[2:]),
        "cut off": "".join(lines[:2]),
    }
    for case, content in tampered.items():
        assert content != text, case
        log_path.write_text(content)
        bad = verify(polder_bin, log_path, jwks)
        assert bad.returncode != 0 and "damaged at line" in bad.stderr, (case, bad.stderr)
    log_path.write_text(text)
    assert verify(polder_bin, log_path, jwks).returncode == 0

    # A chain without its checkpoints and head file, recomputed: unbroken, but unsigned.
    head = Path(f"{log_path}.head")
    head_text = head.read_text()
    head.unlink()
    log_path.write_text(rehash_without_checkpoints(text))
    forged = verify(polder_bin, log_path, jwks)
    assert forged.returncode != 0, forged.stdout
    assert "no signed checkpoint" in forged.stderr and "damaged" not in forged.stderr, forged.stderr
    assert "signed: nothing" in forged.stdout, forged.stdout
    allowed = verify(polder_bin, log_path, jwks, "--allow-unsigned")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning" in allowed.stderr and "no signed checkpoint" in allowed.stderr
    assert "UNSIGNED" in allowed.stdout, allowed.stdout
    log_path.write_text(text)
    head.write_text(head_text)
    normal = verify(polder_bin, log_path, jwks)
    assert normal.returncode == 0 and "intact" in normal.stdout, normal.stderr
    assert "head file: names checkpoint record" in normal.stdout, normal.stdout


@pytest.mark.requirement("UDN-AUTH-7")
def test_the_audit_bounds_what_callers_make_it_write(launcher, idp, polder_bin, tmp_path):
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    import hashlib
    import json
    import signal

    log_path = tmp_path / "audit" / "audit.jsonl"
    node, jwks = audited_node(launcher, idp, polder_bin, tmp_path, log_path)
    # An anonymous 10 MB statement, refused for its length: a few kilobytes of log.
    huge = "SELECT * FROM air_quality WHERE station IN (" + "'BSN123456789', " * 700_000 + "'x')"
    assert len(huge) > 10_000_000
    before = log_path.stat().st_size if log_path.exists() else 0
    err = refused(node, None, huge)
    assert adbc_grpc_status(err) == "InvalidArgument", str(err)
    assert log_path.stat().st_size - before < 8192
    # Thousands of anonymous refusals in a burst: a bounded number of records and a count.
    flood = 1500
    started = time.monotonic()
    with adbc(node, None) as conn, conn.cursor() as cur:
        for _ in range(flood):
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute("SELECT * FROM traffic_counts")
                cur.fetchall()
    elapsed = time.monotonic() - started
    assert node.stop(signal.SIGTERM) == 0

    text = log_path.read_text()
    assert "BSN123456789" not in text
    records = [json.loads(line) for line in text.splitlines()]
    [long] = [r for r in records if r.get("statement_bytes") == len(huge)]
    assert long["kind"] == "refused" and long["subject"] == "anonymous"
    assert long["statement_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert long["statement_truncated"] is True and len(long["statement"].encode()) <= 4096
    anonymous = [r for r in records if r["kind"] == "refused" and r["subject"] == "anonymous"]
    summaries = [r for r in records if r["kind"] == "refusals_suppressed"]
    # Defaults: a burst of 100, then 10 a second; a count at most once a second.
    assert len(anonymous) <= 100 + 10 * elapsed + 1, (len(anonymous), elapsed)
    assert 0 < len(summaries) <= elapsed + 2, (len(summaries), elapsed)
    assert len(anonymous) + sum(r["count"] for r in summaries) == flood + 1
    assert all(r["subject"] == "anonymous" for r in summaries)
    ok = verify(polder_bin, log_path, jwks)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr


@pytest.mark.requirement("UDN-AUTH-7")
def test_personal_data_is_refused_when_the_audit_cannot_be_written(
    launcher, idp, polder_bin, tmp_path
):
    if polder_bin is None or not Path("/dev/full").exists():
        pytest.skip("needs the polder binary and /dev/full")
    node, _ = audited_node(launcher, idp, polder_bin, tmp_path, Path("/dev/full"))
    analyst = token(idp, sub="alice", groups=["mobility"])
    err = refused(node, analyst, "SELECT count(*) FROM traffic_counts")
    assert adbc_grpc_status(err) == "Unavailable" and "audit log" in str(err), str(err)
    # Data that is not personal is still served, and the node keeps serving.
    rows, _ = query_one(node, analyst, "SELECT count(*) FROM air_quality")
    assert rows[0][0] > 0
    assert node.alive()
    # Operators see it in the metrics (docs/operations.md, alerts): the failed writes, and the
    # age of the JWKS the node verifies tokens with.
    text = requests.get(f"{node.http_url}/metrics", timeout=10).text
    # Neither the token nor anything of its claims is a label.
    for secret in (analyst, analyst.split(".")[1], "alice", "mobility"):
        assert secret not in text
    metrics = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert metrics[("polder_audit_write_failures_total", ())] >= 1
    assert 0 <= metrics[("polder_jwks_age_seconds", ())] < 3600


@pytest.mark.requirement("UDN-AUTH-7")
def test_the_audit_names_filters_masks_and_suppressed_groups(
    launcher, idp, polder_bin, guarded_node, sensor_files, tmp_path
):
    import json
    import signal

    node, log_path = guarded_node
    officer = token(idp, sub="olga", roles=["district-officer"], groups=DISTRICTS)
    query_one(node, officer, "SELECT count(*) FROM air_quality")
    node.stop(signal.SIGTERM)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    [dataset] = [r for r in records if r["kind"] == "query" and r["subject"] == "olga"][-1][
        "datasets"
    ]
    assert dataset["row_filter"] == "array_has($groups, neighbourhood_code)"
    assert dataset["masked_columns"] == ["lat", "lon", "sensor_id"]
    assert "BU0344" not in log_path.read_text(), "claim values bound into filters stay out"

    # Suppressed groups are counted: as many as DuckDB finds below k.
    keys = tmp_path / "keys"
    subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                   check=True, timeout=60)  # fmt: skip
    log = tmp_path / "aggregate-audit.jsonl"
    args = auth_args(idp, aggregate_policy(K_SENSORS), "aggregate-audited")
    args += ["--audit-log", str(log), "--audit-key", str(keys / "token-key.pem")]
    aggregate = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    _, small = duckdb_groups(sensor_files, K_SENSORS)
    query_one(aggregate, token(idp, sub="rita", groups=["research"]), PER_NEIGHBOURHOOD)
    aggregate.stop(signal.SIGTERM)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    [start] = [r for r in records if r["kind"] == "query" and r["subject"] == "rita"][-1:]
    [end] = [r for r in records if r["kind"] == "query_end" and r["query"] == start["seq"]]
    assert end["groups_suppressed"] == len(small) > 0, end
