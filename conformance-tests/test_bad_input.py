"""Bad requests get clean, specific errors, change nothing, and leave the node answering."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from udn_conformance.client import describe, expect_error, query_rows
from udn_conformance.compare import assert_same_rows
from udn_conformance.errors import adbc_grpc_status
from udn_conformance.node import with_catalog_args
from udn_conformance.reference import Reference


def _refused(main_conn, sql: str) -> None:
    """UDN-DATA-5: refused with PERMISSION_DENIED (UDN-ERR-1: "statement not allowed")."""
    err = expect_error(main_conn, sql)
    assert adbc_grpc_status(err) == "PermissionDenied", describe(err)


DDL = {
    "create_table": "CREATE TABLE evil (a INT)",
    "create_table_as": "CREATE TABLE evil AS SELECT * FROM nation",
    "create_view": "CREATE VIEW evil AS SELECT * FROM nation",
    "drop_table": "DROP TABLE nation",
    "create_external_table": "CREATE EXTERNAL TABLE evil STORED AS CSV LOCATION '/etc/passwd'",
    "alter_table": "ALTER TABLE nation ADD COLUMN x INT",
}

DML = {
    "insert": "INSERT INTO nation VALUES (99, 'ATLANTIS', 1, 'sunk')",
    "delete": "DELETE FROM nation",
    "update": "UPDATE nation SET n_name = 'X'",
    "with_insert": "WITH x AS (SELECT * FROM nation) INSERT INTO nation SELECT * FROM x",
    "with_delete": "WITH x AS (SELECT 1) DELETE FROM nation",
}


@pytest.mark.parametrize("name", sorted(DDL))
@pytest.mark.requirement("UDN-DATA-5", "UDN-ERR-1", "UDN-ERR-2")
def test_ddl_is_refused(main_conn, main_ref, assert_healthy, name):
    _refused(main_conn, DDL[name])
    sql = "SELECT n_nationkey, n_name, n_regionkey FROM nation"
    assert_same_rows(query_rows(main_conn, sql), main_ref.rows(sql), context="nation unchanged")
    for leftover in ("evil",):
        err = expect_error(main_conn, f"SELECT * FROM {leftover}")
        assert adbc_grpc_status(err) == "NotFound", describe(err)
    assert_healthy()


@pytest.mark.parametrize("name", sorted(DML))
@pytest.mark.requirement("UDN-DATA-5", "UDN-ERR-2")
def test_dml_is_refused(main_conn, main_ref, assert_healthy, name):
    _refused(main_conn, DML[name])
    sql = "SELECT n_nationkey, n_name, n_regionkey FROM nation"
    assert_same_rows(query_rows(main_conn, sql), main_ref.rows(sql), context="nation unchanged")
    assert_healthy()


SESSION = {
    "set_time_zone": "SET TIME ZONE 'Europe/Amsterdam'",
    "set_search_path": "SET search_path TO public",
}


@pytest.mark.parametrize("name", sorted(SESSION))
@pytest.mark.requirement("UDN-DATA-5", "UDN-ERR-2")
def test_session_settings_are_refused(main_conn, main_ref, assert_healthy, name):
    _refused(main_conn, SESSION[name])
    sql = "SELECT n_nationkey, n_name, n_regionkey FROM nation"
    assert_same_rows(query_rows(main_conn, sql), main_ref.rows(sql), context="after SET")
    assert_healthy()


@pytest.mark.requirement("UDN-DATA-5", "UDN-ERR-2")
def test_copy_to_file_is_refused(main_conn, tmp_path, assert_healthy, remote):
    target = tmp_path / f"exfiltrated-{uuid.uuid4().hex}.csv"
    _refused(main_conn, f"COPY (SELECT * FROM nation) TO '{target}'")
    if remote is None:
        assert not target.exists(), "COPY TO wrote a file on the node's machine"
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_syntax_error_is_invalid_argument(main_conn, assert_healthy):
    err = expect_error(main_conn, "SELEC n_name FRM nation")
    assert adbc_grpc_status(err) == "InvalidArgument", describe(err)
    message = str(err).lower()
    assert "selec" in message or "syntax" in message or "expected" in message, describe(err)
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_empty_query_is_invalid_argument(main_conn, assert_healthy):
    err = expect_error(main_conn, "   ")
    assert adbc_grpc_status(err) == "InvalidArgument", describe(err)
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_unknown_table_is_not_found(main_conn, assert_healthy):
    err = expect_error(main_conn, "SELECT * FROM no_such_table_here")
    assert adbc_grpc_status(err) == "NotFound", describe(err)
    assert "no_such_table_here" in str(err), describe(err)
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_unknown_catalog_is_not_found(main_conn, assert_healthy):
    err = expect_error(main_conn, "SELECT * FROM no_such_catalog.public.nation")
    assert adbc_grpc_status(err) == "NotFound", describe(err)
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_unknown_column_names_the_column(main_conn, assert_healthy):
    err = expect_error(main_conn, "SELECT no_such_column FROM nation")
    assert adbc_grpc_status(err) == "NotFound", describe(err)
    assert "no_such_column" in str(err), describe(err)
    assert_healthy()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT n_name + DATE '2020-01-01' FROM nation",
        "SELECT sum(n_name) FROM nation",
        "SELECT * FROM nation WHERE n_nationkey = ARRAY[1, 2]",
        # A pattern too big to compile is the caller's, not the node's, fault.
        "SELECT n_name ~ repeat('(a|b)*', 100000) FROM nation",
        "SELECT regexp_replace(n_name, '(a{1000}){1000}', 'b') FROM nation",
        "SELECT regexp_like(n_name, '(') FROM nation",
    ],
    ids=[
        "string_plus_date", "sum_of_strings", "compare_int_with_array", "regex_operator_too_big",
        "regexp_replace_too_big", "regexp_unbalanced",
    ],
)
@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_type_error_is_invalid_argument(main_conn, assert_healthy, sql):
    err = expect_error(main_conn, sql)
    assert adbc_grpc_status(err) == "InvalidArgument", describe(err)
    assert_healthy()


@pytest.mark.requirement("UDN-FSQL-5", "UDN-ERR-1", "UDN-ERR-2")
def test_wrong_number_of_parameters_is_invalid_argument(main_conn, assert_healthy):
    err = expect_error(
        main_conn, "SELECT * FROM nation WHERE n_nationkey = ? AND n_regionkey = ?", (1,)
    )
    assert adbc_grpc_status(err) == "InvalidArgument", describe(err)
    assert_healthy()


TWO_MB = 2 * 1024 * 1024


def _padded_comment() -> str:
    return "SELECT count(*) FROM nation /* " + "x" * TWO_MB + " */"


def _in_list() -> str:
    values = ",".join(str(i) for i in range(TWO_MB // 5))
    return f"SELECT count(*) FROM nation WHERE n_nationkey IN ({values})"


def _deep_nesting() -> str:
    depth = TWO_MB // 2
    return "SELECT " + "(" * depth + "1" + ")" * depth


def _long_sum() -> str:
    return "SELECT " + "+".join(["1"] * (TWO_MB // 2))


@pytest.mark.parametrize(
    "make",
    [_padded_comment, _in_list, _deep_nesting, _long_sum],
    ids=lambda f: f.__name__.strip("_"),
)
@pytest.mark.requirement("UDN-FSQL-8", "UDN-ERR-1", "UDN-ERR-2")
def test_over_long_query_is_refused(main_conn, assert_healthy, make):
    sql = make()
    assert len(sql) >= TWO_MB
    err = expect_error(main_conn, sql)
    assert adbc_grpc_status(err) == "InvalidArgument", describe(err)
    assert len(str(err)) < 10_000, "the error echoes the query back"
    assert_healthy()


def _bad_csv(path: Path) -> None:
    lines = ["id,value,label"]
    lines += [f"{i},{i * 2},row{i}" for i in range(5000)]
    lines += ["5000,not-a-number,oops", "5001,7", "5002,8,too,many,fields"]
    lines += [f"{i},{i * 2},row{i}" for i in range(5003, 5100)]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-DATA-4")
def test_malformed_csv_at_startup_stops_the_node_naming_it(polder_bin, tmp_path):
    """UDN-DATA-4: a malformed mandatory dataset fails startup, naming the dataset."""
    bad = tmp_path / "broken.csv"
    _bad_csv(bad)
    result = _serve_expecting_exit(polder_bin, "broken", str(bad))
    assert result.returncode != 0
    assert "broken" in result.stderr, result.stderr
    assert "line" in result.stderr.lower(), f"error does not say where: {result.stderr}"
    assert "panic" not in result.stderr.lower(), result.stderr


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-ERR-1", "UDN-ERR-2")
def test_csv_malformed_after_startup_gives_clean_error_and_node_keeps_serving(
    launcher, tmp_path, main_tables, assert_healthy
):
    """UDN-ERR-1/2: data that goes bad on disk is a typed query error, not a crash."""
    path = tmp_path / "changing.csv"
    path.write_text("id,value,label\n" + "".join(f"{i},{i * 2},row{i}\n" for i in range(100)))
    tables = {"changing": path, "nation": main_tables["nation"]}
    node = launcher.node(tables)
    ref = Reference({"nation": main_tables["nation"]})
    _bad_csv(path)
    with node.connect() as conn:
        err = expect_error(conn, "SELECT sum(value) AS s, count(*) AS n FROM changing")
        # UDN-ERR-1: "a dataset's data is malformed" is FAILED_PRECONDITION.
        assert adbc_grpc_status(err) == "FailedPrecondition", describe(err)
        assert "panic" not in str(err).lower(), describe(err)
        assert "csv" in str(err).lower() or "line" in str(err).lower(), (
            f"error does not say what is wrong: {describe(err)}"
        )
    assert_healthy(node, ref, "SELECT n_regionkey, count(*) AS n FROM nation GROUP BY n_regionkey")


def _serve_expecting_exit(
    binary: Path, table: str, location: str, timeout: float = 60
) -> subprocess.CompletedProcess:
    cmd = [
        str(binary),
        "serve",
        "--flight",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        # --config with the [catalog] section a node serving tables needs
        *with_catalog_args(["--table", f"{table}={location}"]),
    ]
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"`{' '.join(cmd)}` still running after {timeout:.0f}s; it must exit"
        ) from e


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-DATA-4")
def test_missing_dataset_path_makes_serve_exit_naming_it(polder_bin, tmp_path):
    location = str(tmp_path / "does" / "not" / "exist" / "ghost.parquet")
    result = _serve_expecting_exit(polder_bin, "ghost_table", location)
    assert result.returncode != 0
    assert "ghost_table" in result.stderr, result.stderr[-2000:]
    assert location in result.stderr, result.stderr[-2000:]


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-DATA-4")
def test_unsupported_format_makes_serve_exit_naming_it(polder_bin, tmp_path):
    location = tmp_path / "data.xyz"
    location.write_text("a,b\n1,2\n")
    result = _serve_expecting_exit(polder_bin, "odd_format", str(location))
    assert result.returncode != 0
    assert "odd_format" in result.stderr, result.stderr[-2000:]
    assert str(location) in result.stderr or "xyz" in result.stderr, result.stderr[-2000:]
