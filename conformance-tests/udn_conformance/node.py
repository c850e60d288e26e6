"""Starting a node under test, or pointing at one that a vendor runs.

Spawn mode (the default) starts `polder serve` on 127.0.0.1:0, reads the one line it prints
when ready (`polder node NAME listening flight=grpc://... http=http://...`) and waits for
`/readyz`. Remote mode (`UDN_FLIGHT_URL` set) uses a node someone else started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import adbc_driver_flightsql as flightsql
import adbc_driver_flightsql.dbapi
import requests

LISTENING = re.compile(r"^polder node (\S+) listening flight=(grpc://\S+) http=(http://\S+)\s*$")
READY_TIMEOUT_S = float(os.environ.get("UDN_READY_TIMEOUT", "120"))
RPC_TIMEOUT_S = float(os.environ.get("UDN_RPC_TIMEOUT", "120"))


class NodeStartError(RuntimeError):
    """The node exited or never said it was listening."""

    def __init__(self, message: str, returncode: int | None, stderr: str):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr


@dataclass
class Node:
    """A node the tests can talk to. `process` is None for a remote node."""

    flight_url: str
    http_url: str | None
    catalog: str | None
    process: subprocess.Popen | None = None
    log_dir: Path | None = None
    tables: dict[str, str] = field(default_factory=dict)

    def connect(self):
        """A new ADBC connection; every call times out rather than hanging the suite."""
        timeout = str(RPC_TIMEOUT_S)
        options = {
            flightsql.DatabaseOptions.TIMEOUT_QUERY.value: timeout,
            flightsql.DatabaseOptions.TIMEOUT_FETCH.value: timeout,
            flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: timeout,
        }
        return adbc_driver_flightsql.dbapi.connect(
            self.flight_url, db_kwargs=options, autocommit=True
        )

    @property
    def flight_location(self) -> str:
        return self.flight_url

    def stderr_text(self) -> str:
        if self.log_dir is None:
            return ""
        return (self.log_dir / "stderr.log").read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop a spawned node; returns its exit code (None for a remote node)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def table_args(tables: dict[str, str | Path]) -> list[str]:
    args: list[str] = []
    for name, location in tables.items():
        args += ["--table", f"{name}={location}"]
    return args


def spawn(
    binary: Path,
    args: list[str],
    *,
    name: str = "conformance",
    wait_ready: bool = True,
    timeout: float = READY_TIMEOUT_S,
) -> Node:
    """Run `polder serve --name NAME --flight 127.0.0.1:0 --http 127.0.0.1:0 ARGS...`."""
    log_dir = Path(tempfile.mkdtemp(prefix="udn-node-"))
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    cmd = [
        str(binary),
        "serve",
        "--name",
        name,
        "--flight",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        *args,
    ]
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    match = None
    while match is None:
        for line in stdout_path.read_text(errors="replace").splitlines():
            match = LISTENING.match(line)
            if match:
                break
        if match:
            break
        if process.poll() is not None:
            raise NodeStartError(
                f"{' '.join(cmd)} exited with {process.returncode} before listening",
                process.returncode,
                stderr_path.read_text(errors="replace"),
            )
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise NodeStartError(
                f"{' '.join(cmd)} printed no listening line in {timeout:.0f}s; stdout: "
                f"{stdout_path.read_text(errors='replace')[-2000:]!r}",
                None,
                stderr_path.read_text(errors="replace"),
            )
        time.sleep(0.05)
    node = Node(
        flight_url=match.group(2),
        http_url=match.group(3),
        catalog=match.group(1),
        process=process,
        log_dir=log_dir,
    )
    if wait_ready:
        wait_until_ready(node, deadline)
    return node


def wait_until_ready(node: Node, deadline: float) -> None:
    last = "no answer"
    while time.monotonic() < deadline:
        if not node.alive():
            raise NodeStartError(
                f"node exited with {node.process.returncode} before /readyz said 200",
                node.process.returncode,
                node.stderr_text(),
            )
        try:
            r = requests.get(f"{node.http_url}/readyz", timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = str(e)
        time.sleep(0.1)
    node.stop()
    raise NodeStartError(f"/readyz not 200 in time (last: {last})", None, node.stderr_text())


def remote_from_env() -> Node | None:
    """The vendor's node named by `UDN_FLIGHT_URL` (and optional `UDN_HTTP_URL`, `UDN_CATALOG`)."""
    url = os.environ.get("UDN_FLIGHT_URL")
    if not url:
        return None
    return Node(
        flight_url=url,
        http_url=os.environ.get("UDN_HTTP_URL") or None,
        catalog=os.environ.get("UDN_CATALOG") or None,
    )
