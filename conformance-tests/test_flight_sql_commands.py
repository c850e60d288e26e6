"""Raw Flight SQL commands with pyarrow.flight: GetSqlInfo values, the metadata commands' exact
schemas and filters, each step of a prepared statement, and error statuses ADBC does not show.

Expected schemas are those Arrow's `FlightSql.proto` gives for each command; expected contents
come from the Parquet files and DuckDB.
"""

from __future__ import annotations

import re
import os
import uuid

import pyarrow as pa
import pyarrow.flight as flight
import pyarrow.parquet as pq
import pytest

from udn_conformance import flightsql as fs
from udn_conformance import proto
from udn_conformance.compare import assert_same_rows, rows_of_arrow
from udn_conformance.errors import flight_grpc_status
from udn_conformance.reference import Reference

SCHEMA = "public"
FLIGHT_ERRORS = (flight.FlightError, pa.ArrowException)


def _f(name: str, type_: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


# FlightSql.proto, "The returned Arrow schema will be: ..." of each command.
TABLES_SCHEMA = [
    _f("catalog_name", pa.utf8()),
    _f("db_schema_name", pa.utf8()),
    _f("table_name", pa.utf8(), False),
    _f("table_type", pa.utf8(), False),
]
EXPECTED_SCHEMAS = {
    "CommandGetCatalogs": [_f("catalog_name", pa.utf8(), False)],
    "CommandGetDbSchemas": [_f("catalog_name", pa.utf8()), _f("db_schema_name", pa.utf8(), False)],
    "CommandGetTables": TABLES_SCHEMA,
    "CommandGetTables+include_schema": [*TABLES_SCHEMA, _f("table_schema", pa.binary(), False)],
    "CommandGetTableTypes": [_f("table_type", pa.utf8(), False)],
    "CommandGetPrimaryKeys": [
        _f("catalog_name", pa.utf8()),
        _f("db_schema_name", pa.utf8()),
        _f("table_name", pa.utf8(), False),
        _f("column_name", pa.utf8(), False),
        _f("key_name", pa.utf8()),
        _f("key_sequence", pa.int32(), False),
    ],
    "CommandGetXdbcTypeInfo": [
        _f("type_name", pa.utf8(), False),
        _f("data_type", pa.int32(), False),
        _f("column_size", pa.int32()),
        _f("literal_prefix", pa.utf8()),
        _f("literal_suffix", pa.utf8()),
        _f("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
        _f("nullable", pa.int32(), False),
        _f("case_sensitive", pa.bool_(), False),
        _f("searchable", pa.int32(), False),
        _f("unsigned_attribute", pa.bool_()),
        _f("fixed_prec_scale", pa.bool_(), False),
        _f("auto_increment", pa.bool_()),
        _f("local_type_name", pa.utf8()),
        _f("minimum_scale", pa.int32()),
        _f("maximum_scale", pa.int32()),
        _f("sql_data_type", pa.int32(), False),
        _f("datetime_subcode", pa.int32()),
        _f("num_prec_radix", pa.int32()),
        _f("interval_precision", pa.int32()),
    ],
}


def _shape(field: pa.Field) -> tuple:
    """Name, type and nullability; a list compares by its item's type and nullability."""
    t = field.type
    if pa.types.is_list(t):
        return field.name, "list", t.value_type, t.value_field.nullable, field.nullable
    return field.name, t, field.nullable


def _command_fields(name: str, catalog: str) -> tuple[str, list]:
    if name == "CommandGetDbSchemas":
        return name, [(1, catalog)]
    if name == "CommandGetTables":
        return name, [(1, catalog)]
    if name == "CommandGetTables+include_schema":
        return "CommandGetTables", [(1, catalog), (5, 1)]
    if name == "CommandGetPrimaryKeys":
        return name, [(1, catalog), (2, SCHEMA), (3, "lineitem")]
    return name, []


@pytest.fixture(scope="module")
def client(main_node):
    c = fs.client(main_node)
    yield c
    c.close()


@pytest.mark.requirement("UDN-FSQL-2")
def test_sql_info_names_the_server_and_says_read_only(client):
    codes = [fs.SERVER_NAME, fs.SERVER_VERSION, fs.SERVER_ARROW_VERSION, fs.SERVER_READ_ONLY]
    info = fs.sql_info(client, codes)
    for code in codes[:3]:
        assert isinstance(info.get(code), str) and info[code].strip(), f"SqlInfo {code}: {info}"
    assert info.get(fs.SERVER_READ_ONLY) is True, f"FLIGHT_SQL_SERVER_READ_ONLY: {info}"


@pytest.mark.requirement("UDN-FSQL-2")
def test_sql_info_without_codes_answers_all(client):
    """An empty `info` list asks for everything the node knows, the four required codes included."""
    everything = fs.sql_info(client, [])
    required = [fs.SERVER_NAME, fs.SERVER_VERSION, fs.SERVER_ARROW_VERSION, fs.SERVER_READ_ONLY]
    assert set(required) <= set(everything), sorted(everything)
    assert everything[fs.SERVER_READ_ONLY] is True


@pytest.mark.parametrize("name", sorted(EXPECTED_SCHEMAS))
@pytest.mark.requirement("UDN-FSQL-3")
def test_metadata_command_schema_is_the_flight_sql_schema(client, catalog, name):
    message, fields = _command_fields(name, catalog)
    info, table = fs.command(client, message, fields)
    expected = [_shape(f) for f in EXPECTED_SCHEMAS[name]]
    assert [_shape(f) for f in info.schema] == expected, f"GetFlightInfo schema:\n{info.schema}"
    assert [_shape(f) for f in table.schema] == expected, f"DoGet schema:\n{table.schema}"
    if name not in ("CommandGetPrimaryKeys",):  # files have no primary keys
        assert table.num_rows > 0, f"{name} answered no rows"


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_catalogs_and_db_schemas_name_the_node(client, catalog):
    _, catalogs = fs.command(client, "CommandGetCatalogs")
    assert catalog in catalogs.column("catalog_name").to_pylist()
    _, schemas = fs.command(client, "CommandGetDbSchemas", [(1, catalog)])
    assert SCHEMA in schemas.column("db_schema_name").to_pylist()
    assert set(schemas.column("catalog_name").to_pylist()) == {catalog}


@pytest.mark.parametrize(
    "pattern,matches",
    [("pub%", True), ("p_blic", True), ("public", True), ("pub", False), ("x%", False)],
)
@pytest.mark.requirement("UDN-FSQL-3")
def test_get_db_schemas_honours_the_filter_pattern(client, catalog, pattern, matches):
    _, schemas = fs.command(client, "CommandGetDbSchemas", [(1, catalog), (2, pattern)])
    names = schemas.column("db_schema_name").to_pylist()
    assert names == ([SCHEMA] if matches else []), f"pattern {pattern!r}: {names}"


@pytest.mark.parametrize(
    "pattern", ["line%", "%item", "n_tion", "%r%", "_______", "orders", "nothing%"]
)
@pytest.mark.requirement("UDN-FSQL-3")
def test_get_tables_honours_the_filter_pattern(client, catalog, main_tables, pattern):
    """`%` is any substring and `_` any one character (SQL LIKE), over every table the node
    serves (a remote node may serve more than the suite's)."""
    like = {"%": ".*", "_": "."}
    regex = re.compile("^" + "".join(like.get(c) or re.escape(c) for c in pattern) + "$")
    _, everything = fs.command(client, "CommandGetTables", [(1, catalog), (2, SCHEMA)])
    served = set(everything.column("table_name").to_pylist())
    assert set(main_tables) <= served, f"GetTables without a pattern lacks {set(main_tables) - served}"
    expected = sorted(t for t in served if regex.match(t))
    _, tables = fs.command(
        client, "CommandGetTables", [(1, catalog), (2, SCHEMA), (3, pattern)]
    )
    assert sorted(tables.column("table_name").to_pylist()) == expected, f"pattern {pattern!r}"


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_tables_include_schema_is_each_tables_schema(client, catalog, main_tables):
    _, tables = fs.command(
        client, "CommandGetTables", [(1, catalog), (2, SCHEMA), (3, "%"), (5, 1)]
    )
    by_name = {row["table_name"]: row for row in tables.to_pylist()}
    assert set(main_tables) <= set(by_name), sorted(by_name)
    for name, path in main_tables.items():
        schema = pa.ipc.read_schema(pa.py_buffer(by_name[name]["table_schema"]))
        assert schema.names == pq.read_schema(path).names, name


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_tables_filters_by_table_type(client, catalog):
    _, types = fs.command(client, "CommandGetTableTypes")
    type_names = types.column("table_type").to_pylist()
    _, all_tables = fs.command(client, "CommandGetTables", [(1, catalog)])
    for table_type in type_names:
        _, some = fs.command(client, "CommandGetTables", [(1, catalog), (4, table_type)])
        assert set(some.column("table_type").to_pylist()) <= {table_type}
        expected = [r for r in all_tables.to_pylist() if r["table_type"] == table_type]
        assert some.num_rows == len(expected), table_type
    _, none = fs.command(client, "CommandGetTables", [(1, catalog), (4, "NO_SUCH_TYPE")])
    assert none.num_rows == 0


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_xdbc_type_info_honours_the_data_type_filter(client):
    _, everything = fs.command(client, "CommandGetXdbcTypeInfo")
    rows = everything.to_pylist()
    assert rows
    for data_type in sorted({r["data_type"] for r in rows})[:4]:
        _, some = fs.command(client, "CommandGetXdbcTypeInfo", [(1, data_type)])
        got = sorted(r["type_name"] for r in some.to_pylist())
        assert got == sorted(r["type_name"] for r in rows if r["data_type"] == data_type), data_type


@pytest.mark.requirement("UDN-FSQL-3")
def test_get_primary_keys_of_a_table(client, catalog):
    """Files declare no keys, so any row must at least name the table asked for."""
    _, keys = fs.command(
        client, "CommandGetPrimaryKeys", [(1, catalog), (2, SCHEMA), (3, "lineitem")]
    )
    assert set(keys.column("table_name").to_pylist()) <= {"lineitem"}


PREPARED_SQL = (
    "SELECT n_nationkey, n_name FROM nation WHERE n_regionkey = ? ORDER BY n_nationkey"
)


def _parameter_batch(prepared: fs.Prepared, values: list[int]) -> pa.RecordBatch:
    schema = prepared.parameter_schema
    assert schema is not None and len(schema) == 1, f"parameter schema: {schema}"
    field = schema.field(0)
    type_ = pa.int64() if pa.types.is_null(field.type) else field.type
    return pa.record_batch([pa.array(values, type_)], names=[field.name])


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_steps(client, main_ref):
    """Create (schemas), bind two rows by DoPut (new handle), execute (one run per row), close."""
    prepared = fs.Prepared(client, PREPARED_SQL)
    assert prepared.handle, "empty prepared statement handle"
    assert prepared.dataset_schema is not None, "no dataset schema"
    assert prepared.dataset_schema.names == ["n_nationkey", "n_name"]
    regions = [1, 3]
    bound = prepared.bind(_parameter_batch(prepared, regions))
    assert bound, "DoPut did not return a DoPutPreparedStatementResult with a handle"
    info, table = prepared.execute(bound)
    assert [(f.name, f.type) for f in info.schema] == [(f.name, f.type) for f in table.schema]
    assert table.schema.names == prepared.dataset_schema.names
    expected = [row for r in regions for row in main_ref.rows(PREPARED_SQL, [r])]
    assert_same_rows(rows_of_arrow(table), expected)
    prepared.close()


@pytest.mark.requirement("UDN-FSQL-5")
def test_prepared_statement_without_parameters(client, main_ref):
    sql = "SELECT r_name FROM region ORDER BY r_name"
    prepared = fs.Prepared(client, sql)
    assert prepared.parameter_schema is None or len(prepared.parameter_schema) == 0
    _, table = prepared.execute()
    assert_same_rows(rows_of_arrow(table), main_ref.rows(sql), ordered=True)
    prepared.close()


@pytest.mark.spawns_node
@pytest.mark.requirement("UDN-FSQL-6", "UDN-FSQL-5")
def test_prepared_statement_handle_is_self_contained(launcher, main_tables):
    """A handle created and bound at one node process executes at a fresh process."""
    tables = {"nation": main_tables["nation"]}
    args = ["--table", f"nation={tables['nation']}"]
    first = launcher.spawn(args)
    c = fs.client(first)
    prepared = fs.Prepared(c, PREPARED_SQL)
    bound = prepared.bind(_parameter_batch(prepared, [2]))
    assert bound, "DoPut did not return a handle"
    first.stop()
    second = launcher.spawn(args)
    try:
        prepared.client = fs.client(second)
        _, table = prepared.execute(bound)
    finally:
        second.stop()
    assert_same_rows(rows_of_arrow(table), Reference(tables).rows(PREPARED_SQL, [2]))


MALFORMED = {
    "statement_query_body": flight.FlightDescriptor.for_command(
        proto.pack_any("CommandStatementQuery", b"\xff\xff\xff")
    ),
    "get_tables_catalog_not_utf8": fs.descriptor("CommandGetTables", [(1, b"\xff\xfe")]),
    "prepared_statement_handle": fs.descriptor(
        "CommandPreparedStatementQuery", [(1, b"\x01\x02 not a handle")]
    ),
    "not_an_any": flight.FlightDescriptor.for_command(b"\xff\x00 not protobuf"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
@pytest.mark.requirement("UDN-ERR-1")
def test_malformed_command_is_invalid_argument(client, assert_healthy, name):
    """The client's fault: INVALID_ARGUMENT, not INTERNAL (which says the node is at fault)."""
    with pytest.raises(FLIGHT_ERRORS) as err:
        client.get_flight_info(MALFORMED[name], fs.OPTIONS)
    status = flight_grpc_status(err.value)
    assert status == "InvalidArgument", f"{status}: {err.value}"
    assert_healthy()


@pytest.mark.requirement("UDN-ERR-1")
def test_errors_do_not_echo_credentials_or_request_metadata(client):
    token, key, trace = (uuid.uuid4().hex for _ in range(3))
    headers = [
        (b"authorization", f"Bearer {token}".encode()),
        (b"x-api-key", key.encode()),
        (b"x-request-trace", trace.encode()),
    ]
    options = flight.FlightCallOptions(timeout=fs.RPC_TIMEOUT_S, headers=headers)
    cases = {
        "unknown table": ("SELECT * FROM no_such_table_x", "NotFound"),
        "syntax error": ("SELEC 1", "InvalidArgument"),
    }
    # A node that authenticates (one under certification for the security class) refuses the
    # made-up token first, which is as right.
    secured = bool(os.environ.get("UDN_SIGNING_KEY"))
    for label, (sql, expected) in cases.items():
        with pytest.raises(FLIGHT_ERRORS) as err:
            fs.statement(client, sql, options)
        message = str(err.value)
        allowed = {expected, "Unauthenticated"} if secured else {expected}
        assert flight_grpc_status(err.value) in allowed, f"{label}: {message}"
        for secret in (token, key, trace):
            assert secret not in message, f"{label}: the error echoes request metadata: {message}"
