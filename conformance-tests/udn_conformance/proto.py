"""A tiny Protocol Buffers wire-format codec, enough to speak raw Flight SQL.

ADBC hides the Flight SQL messages, but a few protocol facts (self-contained tickets, what a
garbage ticket does) can only be checked below it, with `pyarrow.flight`. Flight SQL commands
are small protobuf messages wrapped in `google.protobuf.Any`; writing the handful of fields we
need by hand keeps the suite free of generated code.
"""

from __future__ import annotations

SQL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."

_VARINT = 0
_LEN = 2


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def encode(fields: list[tuple[int, int | str | bytes]]) -> bytes:
    """Encode `(field_number, value)` pairs: ints as varints, str/bytes as length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, bool) or isinstance(value, int):
            out += _varint(number << 3 | _VARINT) + _varint(int(value))
        else:
            data = value.encode() if isinstance(value, str) else bytes(value)
            out += _varint(number << 3 | _LEN) + _varint(len(data)) + data
    return bytes(out)


def decode(data: bytes) -> dict[int, list[int | bytes]]:
    """Decode a message into `{field_number: [values]}` (varints as int, the rest as bytes)."""
    fields: dict[int, list[int | bytes]] = {}
    pos = 0

    def read_varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= len(data):
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value: int | bytes = read_varint()
        elif wire == _LEN:
            length = read_varint()
            if pos + length > len(data):
                raise ValueError("truncated field")
            value = data[pos : pos + length]
            pos += length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def pack_any(message_name: str, body: bytes) -> bytes:
    """Wrap a Flight SQL message (e.g. `CommandStatementQuery`) in `google.protobuf.Any`."""
    return encode([(1, SQL_PREFIX + message_name), (2, body)])


def unpack_any(data: bytes) -> tuple[str, bytes]:
    """Return `(type_url, value)` of a `google.protobuf.Any`."""
    fields = decode(data)
    type_url = bytes(fields.get(1, [b""])[0]).decode()
    value = bytes(fields.get(2, [b""])[0])
    return type_url, value


def command_statement_query(sql: str) -> bytes:
    """The descriptor command for `GetFlightInfo` of an ad-hoc SQL query."""
    return pack_any("CommandStatementQuery", encode([(1, sql)]))
