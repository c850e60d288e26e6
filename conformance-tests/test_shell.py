"""`polder sql`, the analyst's shell, through the real binary: scripts (`-c`, `-f`, piped
input) with meta-commands and every failure reported by line, `COPY TO`, error wording, which
catalogs of a node it federates, and, on a pseudo-terminal (pexpect), Ctrl-C, history and
progress.

Two sample-data nodes: utrecht, and amsterdam, which federates utrecht itself (`--peer`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pexpect
import pyarrow.csv
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

pytestmark = [
    pytest.mark.spawns_node,
    pytest.mark.beyond_spec("polder sql, the analyst's shell"),
]

PROMPT = "polder> "
CONTINUATION = "     -> "
# Running for minutes, its memory bounded, when the test presses Ctrl-C: a digest of each of
# the 200 million pairs of the two cities' readings, computed here.
LONG_QUERY = (
    "SELECT count(*) FROM amsterdam.public.air_quality a CROSS JOIN utrecht.public.air_quality b "
    "WHERE md5(a.sensor_type || b.neighbourhood_code) = 'x';"
)
# The progress line: elapsed, rows, bytes, then what each node sent.
PROGRESS = r"\d+\.\d s, \d+ rows, [\d.]+ [KMG]?B received; (amsterdam|utrecht): \d+ rows"
EXPECT_S = 120


@pytest.fixture(scope="module")
def utrecht(launcher):
    return launcher.spawn([], name="utrecht")


@pytest.fixture(scope="module")
def amsterdam(launcher, utrecht):
    return launcher.spawn(["--peer", f"utrecht={utrecht.flight_url}"], name="amsterdam")


@pytest.fixture()
def nodes(amsterdam, utrecht) -> list[str]:
    return ["--node", f"amsterdam={amsterdam.flight_url}", "--node", f"utrecht={utrecht.flight_url}"]


def sql(polder_bin, *args, stdin: str | None = None, home: Path | None = None):
    env = None if home is None else {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [str(polder_bin), "sql", *args], input=stdin, capture_output=True, text=True,
        timeout=EXPECT_S, env=env,
    )  # fmt: skip


def shell(polder_bin, args: list[str], home: Path) -> pexpect.spawn:
    """The shell on a pseudo-terminal, HOME set to `home`; what it shows is kept in
    `home/pty.log` for the failure's post-mortem."""
    child = pexpect.spawn(
        str(polder_bin), ["sql", *args], env={"HOME": str(home), "TERM": "xterm", "PATH": "/usr/bin:/bin"},
        encoding="utf-8", timeout=EXPECT_S, dimensions=(50, 400), logfile=open(home / "pty.log", "w"),
    )  # fmt: skip
    child.expect_exact(PROMPT)
    return child


def type_line(child: pexpect.spawn, line: str, then: str = PROMPT):
    child.sendline(line)
    child.expect_exact(then)


# --- the interactive shell ------------------------------------------------------------------


def test_ctrl_c_cancels_the_running_query_and_keeps_the_session(polder_bin, nodes, tmp_path):
    child = shell(polder_bin, nodes, tmp_path)
    type_line(child, "CREATE VIEW answer AS SELECT 42 AS n;")
    child.sendline(LONG_QUERY)
    # The progress line says the query is under way (it appears after a second).
    child.expect(PROGRESS)
    child.sendintr()
    # Under heavy load one interrupt was seen lost once in a full suite run (not reproduced
    # alone); a second Ctrl-C is what a user would press, and must cancel.
    if child.expect_exact(["cancelled", pexpect.TIMEOUT], timeout=30) == 1:
        child.sendintr()
        child.expect_exact("cancelled")
    child.expect_exact(PROMPT)
    # Still the same session: the view, and history, are there.
    type_line(child, "SELECT n FROM answer;")
    assert "| 42" in child.before, child.before
    child.sendline("\\q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    history = (tmp_path / ".polder_history").read_text()
    assert "CREATE VIEW answer" in history and "SELECT n FROM answer" in history


def test_progress_names_each_node_with_rows_and_bytes(polder_bin, nodes, tmp_path):
    child = shell(polder_bin, nodes, tmp_path)
    child.sendline(LONG_QUERY)
    # Elapsed, rows, bytes received, then each node that has sent something: rows and bytes.
    child.expect(PROGRESS + r", [\d.]+ [KMG]?B")
    child.sendintr()
    child.expect_exact("cancelled")
    child.expect_exact(PROMPT)
    child.sendline("\\q")
    child.expect(pexpect.EOF)


def test_history_is_saved_as_it_goes_under_home(polder_bin, nodes, tmp_path):
    child = shell(polder_bin, nodes, tmp_path)
    type_line(child, "SELECT 1 AS first_entry;")
    # Saved before the shell exits: a shell that is killed keeps what was typed.
    history = tmp_path / ".polder_history"
    assert history.is_file() and "first_entry" in history.read_text()
    type_line(child, ".tables")
    child.kill(9)
    child.close()
    assert ".tables" in history.read_text()
    # The next shell recalls it (arrow up).
    child = shell(polder_bin, nodes, tmp_path)
    child.send("\x1b[A")
    child.expect_exact(".tables")
    child.sendintr()
    child.sendline("\\q")
    child.expect(pexpect.EOF)


def test_ctrl_c_at_the_prompt_clears_the_line_and_quit_works_mid_statement(polder_bin, nodes, tmp_path):
    child = shell(polder_bin, nodes, tmp_path)
    child.send("SELECT 'never run'")
    child.sendintr()
    child.expect_exact(PROMPT)
    type_line(child, "SELECT 'ran' AS x;")
    assert "never run" not in child.before.split("SELECT 'ran'")[-1]
    # A statement half typed, then \q: the shell quits without running it.
    type_line(child, "SELECT 1", then=CONTINUATION)
    child.sendline("\\q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_meta_commands_in_the_shell(polder_bin, nodes, tmp_path):
    child = shell(polder_bin, nodes, tmp_path)
    type_line(child, "\\dt")
    assert "amsterdam.public.air_quality" in child.before
    type_line(child, "\\d air_quality", then=PROMPT)
    assert "not_found" in child.before and "Did you mean 'amsterdam.public.air_quality'" in child.before
    type_line(child, ".timer on")
    type_line(child, "SELECT 1;")
    assert re.search(r"Run Time: \d+\.\d{3} s", child.before), child.before
    type_line(child, ".quit", then="")
    child.expect(pexpect.EOF)


# --- scripts --------------------------------------------------------------------------------


def test_meta_commands_in_a_script(polder_bin, nodes, tmp_path):
    out = tmp_path / "answer.csv"
    script = tmp_path / "script.sql"
    script.write_text(
        ".tables\n"
        "\\d amsterdam.public.air_quality\n"
        ".schema utrecht.public.neighbourhoods\n"
        ".mode csv\n"
        "SELECT 1 AS one;\n"
        f".output {out}\n"
        "SELECT 2 AS two;\n"
        ".output\n"
        ".mode json\n"
        "SELECT 3 AS three;\n"
        ".help\n"
    )
    done = sql(polder_bin, *nodes, "-f", str(script))
    assert done.returncode == 0, done.stderr
    assert "utrecht.public.traffic_counts" in done.stdout  # .tables
    assert re.search(r"\| pm2_5\s+\| Float64", done.stdout), done.stdout  # \d
    assert re.search(r"\| code\s+\|", done.stdout), done.stdout  # .schema
    assert "one\n1\n" in done.stdout  # .mode csv
    assert "two" not in done.stdout and out.read_text() == "two\n2\n"  # .output FILE
    assert '{"three":3}' in done.stdout  # .output alone, .mode json
    assert ".timer on|off" in done.stdout  # .help
    # Piped input reads meta-commands too.
    piped = sql(polder_bin, *nodes, stdin="\\dt\nSELECT 5 AS five;\n")
    assert piped.returncode == 0 and "amsterdam.public.neighbourhoods" in piped.stdout, piped.stderr
    assert "| five" in piped.stdout


def test_a_script_reports_every_failure_by_line_and_bail_stops_at_the_first(polder_bin, nodes, tmp_path):
    script = tmp_path / "script.sql"
    script.write_text(
        "SELECT 1 AS a;\n"
        "SELECT * FROM nope_one;\n"
        "-- a comment\n"
        "SELECT\n"
        "  2 AS b;\n"
        "\n"
        "SELECT * FROM\n"
        "  nope_two;\n"
        ".nonsense\n"
        "SELECT 3 AS c;\n"
    )
    done = sql(polder_bin, *nodes, "-f", str(script))
    assert done.returncode != 0
    assert "| a" in done.stdout and "| b" in done.stdout and "| c" in done.stdout, done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error at line")]
    assert [e.split(":")[0] for e in errors] == ["error at line 2", "error at line 7", "error at line 9"]
    assert "nope_one" in errors[0] and "nope_two" in errors[1] and ".help" in errors[2]
    bailed = sql(polder_bin, *nodes, "-f", str(script), "--bail")
    assert bailed.returncode != 0
    assert "| a" in bailed.stdout and "| b" not in bailed.stdout, bailed.stdout
    assert bailed.stderr.count("error at line") == 1, bailed.stderr
    # -c too.
    one = sql(polder_bin, *nodes, "-c", "SELECT 1 AS x; SELECT * FROM nope; SELECT 2 AS y")
    assert one.returncode != 0 and "| y" in one.stdout and "error at line 1:" in one.stderr


def test_timer_flag_times_each_statement(polder_bin, nodes):
    done = sql(polder_bin, *nodes, "--timer", "-c", "SELECT 1; SELECT 2;")
    assert done.returncode == 0, done.stderr
    assert len(re.findall(r"^Run Time: \d+\.\d{3} s$", done.stderr, re.M)) == 2, done.stderr


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_a_reader_that_stops_early_ends_the_shell_quietly(polder_bin, nodes, fmt):
    """`polder sql ... | head -1`: once the reader has gone, the shell stops without a panic or an
    error (writing CSV used to panic on the broken pipe)."""
    query = "SELECT a.* FROM amsterdam.public.air_quality a CROSS JOIN (VALUES (1), (2)) v(x)"
    process = subprocess.Popen(
        [str(polder_bin), "sql", *nodes, "--format", fmt, "--max-rows", "100000", "-c", query],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout.readline()
    process.stdout.close()
    _, stderr = process.communicate(timeout=EXPECT_S)
    assert process.returncode == 0, stderr.decode(errors="replace")
    assert b"panicked" not in stderr and b"error" not in stderr, stderr.decode(errors="replace")


# --- errors ---------------------------------------------------------------------------------


def test_a_table_typo_suggests_the_table_and_names_no_catalog_not_written(polder_bin, nodes):
    done = sql(polder_bin, *nodes, "-c", "SELECT * FROM amsterdam.public.air_qualty")
    assert "Did you mean 'amsterdam.public.air_quality'?" in done.stderr, done.stderr
    view = sql(polder_bin, *nodes, "-c", "CREATE VIEW readings AS SELECT 1 AS r; SELECT * FROM reading")
    assert "table 'reading' not found. Did you mean 'readings'?" in view.stderr, view.stderr
    unknown = sql(polder_bin, *nodes, "-c", "SELECT * FROM xyz")
    assert "table 'xyz' not found" in unknown.stderr, unknown.stderr
    assert "datafusion" not in unknown.stderr and "Did you mean" not in unknown.stderr


def test_an_error_is_printed_once_with_one_kind(polder_bin, nodes, tmp_path):
    done = sql(polder_bin, *nodes, "-c", "SELECT CAST(sensor_type AS INT) FROM amsterdam.public.air_quality")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "Cannot cast" in line]
    assert len(lines) == 1, done.stderr
    kinds = re.findall(r"\b(invalid_request|upstream|not_found|internal|bad_data)\b", lines[0])
    assert kinds == ["invalid_request"], lines[0]
    # A node that cannot be reached: said once, not as a log line and a warning.
    down = sql(polder_bin, "--node", "gone=grpc://127.0.0.1:9", "-c", "SELECT 1")
    assert down.stderr.count("peer 'gone' is unavailable") == 1, down.stderr


# --- COPY TO --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "arrow"])
def test_copy_to_writes_a_remote_answer_to_a_file(polder_bin, nodes, tmp_path, fmt):
    path = tmp_path / f"answer.{fmt}"
    # A query across both nodes: each sends its part, the join runs here.
    query = (
        "SELECT a.sensor_type, count(*) AS n FROM utrecht.public.air_quality a "
        "JOIN amsterdam.public.neighbourhoods b ON true GROUP BY 1 ORDER BY 1"
    )
    expected = sql(polder_bin, *nodes, "--format", "csv", "-c", query)
    assert expected.returncode == 0, expected.stderr
    rows = [tuple(line.split(",")) for line in expected.stdout.splitlines()[1:]]
    assert rows
    done = sql(polder_bin, *nodes, "-c", f"COPY ({query}) TO '{path}' STORED AS {fmt}")
    assert done.returncode == 0, done.stderr
    assert re.search(rf"\| {len(rows)}\s+\|", done.stdout), done.stdout  # the rows written
    if fmt == "json":
        got = [json.loads(line) for line in path.read_text().splitlines()]
        got = [(r["sensor_type"], str(r["n"])) for r in got]
    else:
        if fmt == "parquet":
            table = pq.read_table(path)
        elif fmt == "csv":
            table = pyarrow.csv.read_csv(path)
        else:
            with pyarrow.ipc.open_file(path) as reader:
                table = reader.read_all()
        got = list(zip(table.column("sensor_type").to_pylist(), map(str, table.column("n").to_pylist())))
    assert got == rows


# --- which catalogs of a node ---------------------------------------------------------------


def test_a_node_under_any_name_with_its_peers_as_catalogs(polder_bin, amsterdam, utrecht):
    # Amsterdam's node serves its own catalog and utrecht's (its peer): under any local name,
    # the own one; utrecht as a catalog of its own, reached through amsterdam.
    done = sql(
        polder_bin, "--node", f"city={amsterdam.flight_url}", "--format", "csv", "-c",
        "SELECT count(*) AS n FROM city.public.air_quality; "
        "SELECT count(*) AS n FROM utrecht.public.air_quality",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("n\n") == 2
    # #CATALOG picks one catalog of the node.
    picked = sql(
        polder_bin, "--node", f"u={amsterdam.flight_url}#utrecht", "--format", "csv", "-c",
        "SELECT count(*) AS n FROM u.public.air_quality",
    )  # fmt: skip
    assert picked.returncode == 0, picked.stderr
    direct = sql(
        polder_bin, "--node", f"utrecht={utrecht.flight_url}", "--format", "csv", "-c",
        "SELECT count(*) AS n FROM utrecht.public.air_quality",
    )  # fmt: skip
    assert picked.stdout == direct.stdout
    # A --node flag keeps its name: utrecht is then the node given, not amsterdam's peer.
    both = sql(
        polder_bin, "--node", f"amsterdam={amsterdam.flight_url}", "--node",
        f"utrecht={utrecht.flight_url}", "-c", "\\dt",
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert both.stdout.count("utrecht.public.air_quality") == 1
