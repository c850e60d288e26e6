"""Reading the gRPC status a node answered with out of what a client library raises.

ADBC's Flight SQL driver (Go, ADBC 1.13) turns a gRPC status into an `adbc_driver_manager.Error`
whose `status_code` is the ADBC status (InvalidArgument -> INVALID_ARGUMENT, NotFound ->
NOT_FOUND, PermissionDenied -> UNAUTHORIZED, Unknown -> UNKNOWN, ...), whose `vendor_code` is
None, and whose message ends with the gRPC code's name and the ADBC call, e.g.
`INVALID_ARGUMENT: [FlightSQL] <server message> (InvalidArgument; Prepare)`.
`pyarrow.flight` raises its own exception classes, one per code family.
"""

from __future__ import annotations

import re

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight

GRPC_CODES = {
    0: "OK",
    1: "Canceled",
    2: "Unknown",
    3: "InvalidArgument",
    4: "DeadlineExceeded",
    5: "NotFound",
    6: "AlreadyExists",
    7: "PermissionDenied",
    8: "ResourceExhausted",
    9: "FailedPrecondition",
    10: "Aborted",
    11: "OutOfRange",
    12: "Unimplemented",
    13: "Internal",
    14: "Unavailable",
    15: "DataLoss",
    16: "Unauthenticated",
}
_NAME_IN_MESSAGE = re.compile(r"\((" + "|".join(GRPC_CODES.values()) + r");")


def adbc_grpc_status(err: adbc_driver_manager.Error) -> str:
    """The gRPC status name behind an ADBC error, e.g. 'InvalidArgument'."""
    if err.vendor_code in GRPC_CODES:
        return GRPC_CODES[err.vendor_code]
    found = _NAME_IN_MESSAGE.findall(str(err))
    if found:
        return found[-1]  # the driver appends the code last, after the server's message
    return f"unknown (ADBC status {err.status_code.name}, no gRPC code in {str(err)!r})"


_GRPC_STATUS_NUMBER = re.compile(r"grpc_status:\s*(\d+)")
_GRPC_DEBUG_NAME = re.compile(r"gRPC client debug context: ([A-Z_]+):")
# pyarrow's own wording, e.g. "gRPC returned out-of-range error, with message: ..." or
# "Flight returned invalid argument error, with message: ...".
_RETURNED = re.compile(r"(?:gRPC|Flight) returned ([a-z -]+?) error, with message")
_RETURNED_NAMES = {
    "cancelled": "Canceled",
    "unknown": "Unknown",
    "invalid argument": "InvalidArgument",
    "deadline exceeded": "DeadlineExceeded",
    "timeout": "DeadlineExceeded",
    "not found": "NotFound",
    "already exists": "AlreadyExists",
    "permission denied": "PermissionDenied",
    "unauthorized": "PermissionDenied",
    "resource exhausted": "ResourceExhausted",
    "failed precondition": "FailedPrecondition",
    "aborted": "Aborted",
    "out-of-range": "OutOfRange",
    "out of range": "OutOfRange",
    "unimplemented": "Unimplemented",
    "not implemented": "Unimplemented",
    "internal": "Internal",
    "unavailable": "Unavailable",
    "data loss": "DataLoss",
    "unauthenticated": "Unauthenticated",
}


def flight_grpc_status(err: Exception) -> str:
    """The gRPC status behind a pyarrow.flight error, e.g. 'InvalidArgument'.

    pyarrow's message usually carries gRPC's debug context (`grpc_status:3` or
    `INVALID_ARGUMENT:`), else its own wording (`gRPC returned out-of-range error`); failing
    both, the exception class tells the code family (several codes, e.g. InvalidArgument,
    FailedPrecondition and OutOfRange, all become ArrowInvalid).
    """
    text = str(err)
    m = _GRPC_STATUS_NUMBER.search(text)
    if m and int(m.group(1)) in GRPC_CODES:
        return GRPC_CODES[int(m.group(1))]
    m = _GRPC_DEBUG_NAME.search(text)
    if m:
        camel = "".join(part.capitalize() for part in m.group(1).split("_"))
        return {"Cancelled": "Canceled"}.get(camel, camel)
    m = _RETURNED.search(text)
    if m and m.group(1) in _RETURNED_NAMES:
        return _RETURNED_NAMES[m.group(1)]
    mapping = [
        (flight.FlightUnauthenticatedError, "Unauthenticated"),
        (flight.FlightUnauthorizedError, "PermissionDenied"),
        (flight.FlightTimedOutError, "DeadlineExceeded"),
        (flight.FlightCancelledError, "Canceled"),
        (flight.FlightUnavailableError, "Unavailable"),
        (flight.FlightInternalError, "Internal"),
        (pa.ArrowNotImplementedError, "Unimplemented"),
        (pa.ArrowInvalid, "InvalidArgument"),
        (pa.ArrowKeyError, "NotFound"),
        (flight.FlightServerError, "Unknown"),
    ]
    for klass, name in mapping:
        if isinstance(err, klass):
            return name
    return type(err).__name__
