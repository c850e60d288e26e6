"""roapi (PyPI `roapi`, pinned in requirements.txt): a DataFusion-based Flight SQL server of
another project, started for the tests that need a foreign server (a federation peer, and a
certification run the suite must refuse)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def serving(tables: list[str], log: Path) -> Iterator[tuple[str, str]]:
    """roapi serving `NAME=LOCATION` tables; yields its Flight SQL and HTTP URLs, and stops it."""
    binary = shutil.which("roapi") or str(Path(sys.executable).parent / "roapi")
    if not Path(binary).exists():
        pytest.fail("roapi is not installed: pip install -r conformance-tests/requirements.txt")
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "--addr-http", f"127.0.0.1:{ports[0]}", "--addr-flight-sql",
             f"127.0.0.1:{ports[1]}", "--addr-postgres", f"127.0.0.1:{ports[2]}",
             *[a for t in tables for a in ("-t", t)]],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "for FlightSQL traffic" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        yield f"grpc://127.0.0.1:{ports[1]}", f"http://127.0.0.1:{ports[0]}"
    finally:
        proc.kill()
        proc.wait()
