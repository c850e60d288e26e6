"""Raw Flight SQL calls with `pyarrow.flight`, for what ADBC hides: `GetSqlInfo` values, the
exact schemas of the metadata commands, and each step of a prepared statement.

Message and field numbers are those of Arrow's `FlightSql.proto`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.flight as flight

from . import proto
from .node import RPC_TIMEOUT_S

OPTIONS = flight.FlightCallOptions(timeout=RPC_TIMEOUT_S)

# SqlInfo codes (enum SqlInfo in FlightSql.proto).
SERVER_NAME = 0
SERVER_VERSION = 1
SERVER_ARROW_VERSION = 2
SERVER_READ_ONLY = 3
SERVER_STATEMENT_TIMEOUT = 100  # FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT, milliseconds
SQL_MAX_STATEMENT_LENGTH = 557  # bytes


def client(node, **kwargs) -> flight.FlightClient:
    return flight.FlightClient(node.flight_url, **kwargs)


Fields = list[tuple[int, int | str | bytes]]


def descriptor(message: str, fields: Fields) -> flight.FlightDescriptor:
    return flight.FlightDescriptor.for_command(proto.pack_any(message, proto.encode(fields)))


def read_info(c: flight.FlightClient, info: flight.FlightInfo, options=OPTIONS) -> pa.Table:
    """Every endpoint's stream, concatenated; the FlightInfo's schema when there is none."""
    tables = [c.do_get(ep.ticket, options).read_all() for ep in info.endpoints]
    return pa.concat_tables(tables) if tables else info.schema.empty_table()


def command(
    c: flight.FlightClient, message: str, fields: Fields = ()
) -> tuple[flight.FlightInfo, pa.Table]:
    """`GetFlightInfo` for a Flight SQL command, then `DoGet` of its endpoints."""
    info = c.get_flight_info(descriptor(message, list(fields)), OPTIONS)
    return info, read_info(c, info)


def sql_info(c: flight.FlightClient, codes: Sequence[int]) -> dict[int, object]:
    """`CommandGetSqlInfo` for `codes`: code -> value."""
    _, table = command(c, "CommandGetSqlInfo", [(1, code) for code in codes])
    return {row["info_name"]: row["value"] for row in table.to_pylist()}


def statement(
    c: flight.FlightClient, sql: str, options=OPTIONS
) -> tuple[flight.FlightInfo, pa.Table]:
    """`CommandStatementQuery`: an ad-hoc query, not prepared."""
    info = c.get_flight_info(descriptor_for_statement(sql), options)
    return info, read_info(c, info, options)


def count_rows(c: flight.FlightClient, sql: str, options=OPTIONS) -> int:
    """Runs `sql` and counts the rows of every endpoint batch by batch, holding no result."""
    info = c.get_flight_info(descriptor_for_statement(sql), options)
    rows = 0
    for endpoint in info.endpoints:
        for chunk in c.do_get(endpoint.ticket, options):
            rows += chunk.data.num_rows
    return rows


def descriptor_for_statement(sql: str) -> flight.FlightDescriptor:
    """The descriptor of `CommandStatementQuery` for `sql`."""
    return flight.FlightDescriptor.for_command(proto.command_statement_query(sql))


def _action(c: flight.FlightClient, name: str, message: str, body: bytes) -> list[bytes]:
    action = flight.Action(name, proto.pack_any(message, body))
    return [r.body.to_pybytes() for r in c.do_action(action, OPTIONS)]


class Prepared:
    """A prepared statement created with the raw `CreatePreparedStatement` action."""

    def __init__(self, c: flight.FlightClient, sql: str):
        self.client = c
        request = proto.encode([(1, sql)])
        results = _action(
            c, "CreatePreparedStatement", "ActionCreatePreparedStatementRequest", request
        )
        assert len(results) == 1, f"CreatePreparedStatement gave {len(results)} results"
        type_url, value = proto.unpack_any(results[0])
        assert type_url.endswith("ActionCreatePreparedStatementResult"), type_url
        fields = proto.decode(value)
        self.handle: bytes = bytes(fields.get(1, [b""])[0])
        self.dataset_schema = _schema(fields.get(2, [b""])[0])
        self.parameter_schema = _schema(fields.get(3, [b""])[0])

    def _descriptor(self, handle: bytes) -> flight.FlightDescriptor:
        return descriptor("CommandPreparedStatementQuery", [(1, handle)])

    def bind(self, parameters: pa.RecordBatch, handle: bytes | None = None) -> bytes | None:
        """`DoPut` of parameter rows; the `DoPutPreparedStatementResult` handle (None if none)."""
        writer, reader = self.client.do_put(
            self._descriptor(self.handle if handle is None else handle), parameters.schema, OPTIONS
        )
        writer.write_batch(parameters)
        writer.done_writing()
        metadata = reader.read()
        writer.close()
        if metadata is None:
            return None
        fields = proto.decode(metadata.to_pybytes())
        return bytes(fields[1][0]) if 1 in fields else None

    def execute(self, handle: bytes | None = None) -> tuple[flight.FlightInfo, pa.Table]:
        """`GetFlightInfo` + `DoGet` of the statement (by `handle`, default the original)."""
        info = self.client.get_flight_info(
            self._descriptor(self.handle if handle is None else handle), OPTIONS
        )
        return info, read_info(self.client, info)

    def close(self) -> None:
        _action(
            self.client,
            "ClosePreparedStatement",
            "ActionClosePreparedStatementRequest",
            proto.encode([(1, self.handle)]),
        )


def _schema(data: bytes) -> pa.Schema | None:
    return pa.ipc.read_schema(pa.py_buffer(bytes(data))) if data else None
