"""A loopback HTTP file server with byte ranges, to serve a node its datasets by http:// URL.

Python's `http.server` ignores `Range`, which Parquet readers need (they read the footer first);
this one answers `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` with 206 Partial Content.
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - silence the per-request log
        pass

    def _file(self) -> Path | None:
        path = Path(self.translate_path(self.path))
        return path if path.is_file() else None

    def _headers(self, path: Path, status: int, start: int, length: int, size: int) -> None:
        stat = path.stat()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        etag = hashlib.sha1(f"{path}:{stat.st_mtime_ns}:{size}".encode()).hexdigest()
        self.send_header("ETag", f'"{etag}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.end_headers()

    def _range(self, size: int) -> tuple[int, int] | None:
        header = self.headers.get("Range")
        if not header:
            return None
        m = _RANGE.match(header.strip())
        if not m or (not m.group(1) and not m.group(2)):
            return None
        if not m.group(1):
            n = int(m.group(2))
            return max(0, size - n), size - 1
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
        return start, min(end, size - 1)

    def _serve(self, body: bool) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        wanted = self._range(size)
        if wanted is None:
            start, length, status = 0, size, 200
        else:
            start, end = wanted
            if start >= size or end < start:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            length, status = end - start + 1, 206
        self._headers(path, status, start, length, size)
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(length))

    def _wait_for_gate(self) -> None:
        gate = self.server.gate
        if gate is not None:
            self.server.waiting.set()
            gate.wait(timeout=120)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._wait_for_gate()
        self._serve(body=True)

    def do_HEAD(self):  # noqa: N802
        self._wait_for_gate()
        self._serve(body=False)


class FileServer:
    """Serves `root` on http://127.0.0.1:PORT/ until `close()`.

    With a `gate` (a `threading.Event`), every request waits until the gate is set (at most
    two minutes): a dataset that takes as long to load as the test wants. `waiting` is set once
    a request is held at the gate.
    """

    def __init__(self, root: Path, gate: threading.Event | None = None):
        handler = partial(_Handler, directory=os.fspath(root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.gate = gate
        self._server.waiting = self.waiting = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
