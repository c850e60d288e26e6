"""A Flight SQL peer that misbehaves on purpose, for testing how a federation handles failure.

It forwards every request to a real node (`--upstream`) and answers with the node's answer,
except that data streams of queries (not the `GetTables` discovery) go wrong after `--after`
batches, as `--mode` says:

- `error`: the stream ends with a gRPC error status (the peer fails mid-query);
- `hang`: the stream stops sending and never ends (the peer is stuck);
- `exit`: the process exits at once (the peer is killed mid-query);
- `drop-column`: batches lack their last column (the peer breaks the schema it promised);
- `silent`: a TCP listener that accepts connections and never answers anything, not even the
  HTTP/2 handshake (a peer that is stuck; no `--upstream` needed).

Run: `python -m udn_conformance.chaos_peer --upstream grpc://127.0.0.1:50051 --mode error`;
it prints `listening grpc://127.0.0.1:PORT` when ready.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pyarrow as pa
import pyarrow.flight as flight


class ChaosPeer(flight.FlightServerBase):
    def __init__(self, location: str, upstream: str, mode: str, after: int):
        super().__init__(location)
        self.upstream = flight.connect(upstream)
        self.mode = mode
        self.after = after

    def get_flight_info(self, context, descriptor):
        info = self.upstream.get_flight_info(descriptor)
        # Endpoints without a location: the client reads them from this server.
        endpoints = [flight.FlightEndpoint(e.ticket, []) for e in info.endpoints]
        return flight.FlightInfo(
            info.schema, descriptor, endpoints, info.total_records, info.total_bytes
        )

    def do_get(self, context, ticket):
        reader = self.upstream.do_get(ticket)
        schema = reader.schema
        if "table_schema" in schema.names:
            # Discovery (GetTables) passes through unchanged.
            return flight.RecordBatchStream(reader.read_all())
        out_schema = schema.remove(len(schema) - 1) if self.mode == "drop-column" else schema

        def batches():
            sent = 0
            for chunk in reader:
                batch = chunk.data
                if self.mode == "drop-column":
                    batch = pa.RecordBatch.from_arrays(
                        batch.columns[:-1], schema=out_schema
                    )
                elif sent >= self.after:
                    if self.mode == "error":
                        raise flight.FlightInternalError("injected failure after some batches")
                    if self.mode == "hang":
                        time.sleep(3600)
                    if self.mode == "exit":
                        os._exit(3)
                yield batch
                sent += 1

        return flight.GeneratorStream(out_schema, batches())


def serve_silent(port: int) -> None:
    """Accepts connections and holds them open without reading or answering."""
    import socket

    listener = socket.create_server(("127.0.0.1", port))
    print(f"listening grpc://127.0.0.1:{listener.getsockname()[1]}", flush=True)
    held = []
    while True:
        conn, _ = listener.accept()
        held.append(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream")
    parser.add_argument(
        "--mode", choices=["error", "hang", "exit", "drop-column", "silent"], required=True
    )
    parser.add_argument("--after", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "silent":
        serve_silent(args.port)
        return
    if not args.upstream:
        parser.error(f"--mode {args.mode} needs --upstream")
    server = ChaosPeer(f"grpc://127.0.0.1:{args.port}", args.upstream, args.mode, args.after)
    print(f"listening grpc://127.0.0.1:{server.port}", flush=True)
    server.serve()


if __name__ == "__main__":
    sys.exit(main())
