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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import adbc_driver_flightsql as flightsql
import adbc_driver_flightsql.dbapi
import requests

LISTENING = re.compile(
    r"^polder node (\S+) listening flight=(grpc(?:\+tls)?://\S+) http=(http://\S+)\s*$"
)
READY_TIMEOUT_S = float(os.environ.get("UDN_READY_TIMEOUT", "120"))
RPC_TIMEOUT_S = float(os.environ.get("UDN_RPC_TIMEOUT", "120"))

# The smallest complete `[catalog]` section of Polder's configuration file. A node that serves
# tables of its own refuses to start without one (its DCAT-AP-NL catalog needs these facts), so
# `spawn` gives it to every node started with `--table` and no `--config` of its own; tests that
# write their own configuration file append it (`with_catalog`).
CATALOG_SECTION = """\
[catalog]
base_url = "http://localhost:8080"
title = "Conformance test node"
description = "A node started by the UDN conformance suite."
license = "http://creativecommons.org/publicdomain/zero/1.0/"
access_rights = "public"
themes = ["GOVE"]

[catalog.publisher]
name = "UDN conformance suite"
uri = "https://w3id.org/udn/conformance"

[catalog.contact_point]
name = "Conformance suite"
email = "conformance@example.org"
"""


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


def with_catalog(config_text: str) -> str:
    """A configuration file's text with `CATALOG_SECTION` appended (on a line of its own)."""
    return config_text.rstrip("\n") + "\n\n" + CATALOG_SECTION


def catalog_config_file(directory: Path | None = None) -> Path:
    """A configuration file holding only `CATALOG_SECTION`."""
    directory = directory or Path(tempfile.mkdtemp(prefix="udn-config-"))
    path = directory / "catalog.toml"
    path.write_text(CATALOG_SECTION)
    return path


def with_catalog_args(args: list[str], directory: Path | None = None) -> list[str]:
    """`args` plus `--config FILE` with `CATALOG_SECTION`, when they serve tables of their own
    (`--table`) and name no configuration file. A node without tables serves the bundled sample
    data, which carries its own catalog metadata, so it gets none."""
    serves_tables = any(a == "--table" or a.startswith("--table=") for a in args)
    has_config = any(a == "--config" or a.startswith("--config=") for a in args)
    if not serves_tables or has_config:
        return list(args)
    return ["--config", str(catalog_config_file(directory)), *args]


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
    wait_peers: bool | Iterable[str] = True,
    timeout: float = READY_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> Node:
    """Run `polder serve --name NAME --flight 127.0.0.1:0 --http 127.0.0.1:0 ARGS...`.

    With `wait_ready`, waits for `/readyz` to say 200 and, as `wait_peers` says: `True`, for
    the first discovery of every peer to end (discovered or unavailable); names, for those
    peers to be discovered; `False`, for nothing. A node is ready before its peers are.

    A node serving `--table`s without a `--config` gets one with `CATALOG_SECTION`.
    """
    log_dir = Path(tempfile.mkdtemp(prefix="udn-node-"))
    args = with_catalog_args(args, log_dir)
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
        process = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
        )
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
        wait_until_ready(node, deadline, wait_peers)
    return node


def wait_until_ready(node: Node, deadline: float, peers: bool | Iterable[str] = False) -> None:
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
                states = r.json().get("peers", {})
                if peers is True:
                    pending = [name for name, state in states.items() if state == "discovering"]
                elif peers is False:
                    pending = []
                else:
                    pending = [name for name in peers if states.get(name) != "discovered"]
                if not pending:
                    return
                last = f"peers not discovered yet: {', '.join(pending)}"
            else:
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


def run_expecting_exit(
    cmd: list[str], log_dir: Path, timeout: float = 30, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a node command that must exit (a configuration the node rejects). Returns (exit
    code, stderr). Fails as soon as the node says it is listening: the configuration was
    accepted. `env` replaces the environment when given."""
    out, err = log_dir / "reject.stdout.log", log_dir / "reject.stderr.log"
    with open(out, "wb") as o, open(err, "wb") as e:
        process = subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None:
            listening = any(LISTENING.match(line) for line in out.read_text().splitlines())
            if listening or time.monotonic() > deadline:
                raise AssertionError(
                    f"`{' '.join(cmd)}` {'is listening' if listening else 'still runs'}: the "
                    f"configuration was accepted. stderr: {err.read_text()[-1500:]}"
                )
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err.read_text(errors="replace")


def rss(pid: int) -> int | None:
    """Resident memory of a process in bytes (Linux), None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
