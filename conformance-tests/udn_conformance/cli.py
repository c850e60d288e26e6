"""`udn-conformance`: the certification run of the Urban Data Node conformance suite.

    udn-conformance fixtures --out DIR
    udn-conformance run --flight URL [--http URL] --data DIR --classes core,catalog,...
        [--report FILE.md] [--junit FILE.xml] [--json FILE.json]
        [--signing-key FILE.jwk --issuer ISS --audience AUD] [-- PYTEST-ARGUMENTS]
    udn-conformance run --node-command PATH --classes ... [--report ...] [-- PYTEST-ARGUMENTS]

`fixtures` writes the files a node under test must serve and `DIR/tables.txt`, one
`NAME=LOCATION` line per table. `run` runs the tests of the claimed classes (and of the classes
they depend on) against a node someone started, or, with `--node-command`, against nodes the
suite starts itself with that command (every test runs, those that need a node of their own
included); it writes the reports and exits non-zero unless every claimed class passed. See the
suite's README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import datasets, paths, spec, tokens
from .datasets import TABLES_FILE

# The identity provider a node under certification trusts (the suite plays it), unless the
# supplier brings its own key: `run --signing-key --issuer --audience`.
ISSUER = tokens.ISSUER
AUDIENCE = "udn-certification"


def _write_auth(out: Path, tables: list[str]) -> None:
    """The key pair the node under certification trusts, and Polder's policy for the
    certification grants."""
    import json

    from .access import certification_policy

    out.mkdir(parents=True, exist_ok=True)
    signer = tokens.Signer.new(kid="udn-certification")
    key = out / "signing-key.jwk"
    key.write_text(json.dumps(signer.private_jwk()) + "\n", encoding="utf-8")
    key.chmod(0o600)
    signer.write_jwks(out / "jwks.json")
    (out / "polder-policy.toml").write_text(certification_policy(tables), encoding="utf-8")


def write_fixtures(out: Path, real_data: bool = True) -> dict[str, Path]:
    """Writes every fixture file under `out` and `out/tables.txt`; returns table -> location.
    With `real_data`, the tables of the real open data are listed too, when it is present."""
    out = out.resolve()
    tables: dict[str, Path] = dict(datasets.write_generated(out / "generated"))
    generators = datasets.tpch_generators(paths.target_dir())
    if not generators:
        raise SystemExit(
            "udn-conformance fixtures: no TPC-H generator found (tpchgen-cli is one of the "
            "suite's dependencies: reinstall the suite, or put tpchgen-cli on PATH)"
        )
    tables.update(datasets.write_tpch(out / "tpch", generators))
    shared = paths.shared_data() if real_data else None
    if shared is not None:
        tables.update({name: shared / rel for name, rel in datasets.SHARED_TABLES.items()})
    from .access import HIDDEN, PERSONAL, PROTECTED, PURPOSED, sensor_readings, traffic_counts

    tables[PROTECTED] = traffic_counts(out / "auth" / f"{PROTECTED}.csv")
    tables[HIDDEN] = tables[PROTECTED]  # the same rows under a hidden name
    tables[PURPOSED] = tables[PROTECTED]  # and bound to purposes
    tables[PERSONAL] = sensor_readings(out / "auth" / f"{PERSONAL}.csv")
    _write_auth(out / "auth", list(tables))
    datasets.write_table_list(out, tables)
    return tables


def _fixtures(args: argparse.Namespace) -> int:
    tables = write_fixtures(args.out)
    auth = args.out.resolve() / "auth"
    print(f"wrote {len(tables)} tables; serve every line of {args.out / TABLES_FILE}:")
    print((args.out / TABLES_FILE).read_text(encoding="utf-8"), end="")
    print(
        f"for the security and privacy classes: trust {auth / 'jwks.json'} (issuer {ISSUER}, audience "
        f"{AUDIENCE}) with the grants of the suite's README (Polder: --policy "
        f"{auth / 'polder-policy.toml'}), then run with --signing-key {auth / 'signing-key.jwk'} "
        f"--issuer {ISSUER} --audience {AUDIENCE}"
    )
    return 0


def _classes(value: str) -> str:
    try:  # the check the run itself makes (conftest.py), before any test starts
        names = spec.claimed(spec.load_classes(paths.spec_file()), value)
    except KeyError as err:
        raise argparse.ArgumentTypeError(err.args[0]) from None
    if not names:
        raise argparse.ArgumentTypeError("name at least one class")
    return value


def _spawn_env(args: argparse.Namespace) -> dict[str, str | None] | None:
    """The environment of a run whose nodes the suite starts with `--node-command`; None (and a
    message) when the options do not fit that."""
    remote_only = [name for name, value in (
        ("--http", args.http), ("--catalog", args.catalog), ("--data", args.data),
        ("--signing-key", args.signing_key), ("--issuer", args.issuer),
        ("--audience", args.audience),
    ) if value]  # fmt: skip
    if remote_only:
        print(f"udn-conformance run: {', '.join(remote_only)} belong to a node started by hand "
              "(--flight); with --node-command the suite starts the nodes, writes their files "
              "and plays their identity provider itself", file=sys.stderr)  # fmt: skip
        return None
    command = Path(args.node_command)
    if not (command.is_file() and os.access(command, os.X_OK)):
        print(f"udn-conformance run: --node-command {command}: not an executable file",
              file=sys.stderr)
        return None
    env: dict[str, str | None] = {name: None for name in (
        "UDN_FLIGHT_URL", "UDN_HTTP_URL", "UDN_CATALOG", "UDN_DATA_DIR", "UDN_SIGNING_KEY",
        "UDN_ISSUER", "UDN_AUDIENCE",
    )}  # fmt: skip
    env["POLDER_BIN"] = str(command.resolve())
    return env


def _run(args: argparse.Namespace, pytest_args: list[str]) -> int:
    import pytest

    if bool(args.flight) == bool(args.node_command):
        print("udn-conformance run: give either --flight URL (a node started by hand) or "
              "--node-command PATH (nodes the suite starts)", file=sys.stderr)
        return 2
    env = _spawn_env(args) if args.node_command else _remote_env(args)
    if env is None:
        return 2
    for name, value in env.items():
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    suite = paths.SUITE
    argv = [
        str(suite), "--rootdir", str(suite), "-c", str(suite / "pytest.ini"),
        "-p", "no:cacheprovider", "--classes", args.classes,
    ]  # fmt: skip
    if args.report:
        argv += ["--udn-report", str(args.report)]
    if args.json:
        argv += ["--udn-json", str(args.json)]
    if args.junit:
        argv += ["--junitxml", str(args.junit)]
    return int(pytest.main(argv + pytest_args))


def _remote_env(args: argparse.Namespace) -> dict[str, str | None] | None:
    """The environment of a run against the node started by hand at `--flight`; None (and a
    message) when the options are incomplete."""
    data = args.data or (Path(os.environ["UDN_DATA_DIR"]) if os.environ.get("UDN_DATA_DIR") else None)
    if data is None and (Path.cwd() / TABLES_FILE).is_file():
        data = Path.cwd()  # run from the folder the fixtures were written to
    if data is None:
        print("udn-conformance run: --data DIR is required (the folder `udn-conformance "
              "fixtures --out DIR` wrote), unless run from that folder", file=sys.stderr)
        return None
    if not (data / TABLES_FILE).is_file():
        print(f"udn-conformance run: {data / TABLES_FILE} not found; run `udn-conformance "
              f"fixtures --out {data}` and serve its tables", file=sys.stderr)
        return None
    token_options = (args.signing_key, args.issuer, args.audience)
    if any(token_options) and not all(token_options):
        print("udn-conformance run: --signing-key, --issuer and --audience go together",
              file=sys.stderr)
        return None
    if args.signing_key and not args.signing_key.is_file():
        print(f"udn-conformance run: --signing-key {args.signing_key}: no such file", file=sys.stderr)
        return None
    return {
        "UDN_FLIGHT_URL": args.flight,
        "UDN_HTTP_URL": args.http,
        "UDN_CATALOG": args.catalog,
        "UDN_DATA_DIR": str(data.resolve()),
        "UDN_SIGNING_KEY": str(args.signing_key.resolve()) if args.signing_key else None,
        "UDN_ISSUER": args.issuer,
        "UDN_AUDIENCE": args.audience,
    }


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="udn-conformance",
        description="The Urban Data Node conformance suite: fixtures for a node under test, "
        "and a certification run against it.",
    )
    commands = top.add_subparsers(dest="command", required=True)
    fixtures = commands.add_parser(
        "fixtures", help="write the files a node under test must serve, and DIR/tables.txt"
    )
    fixtures.add_argument("--out", type=Path, required=True, metavar="DIR")
    run = commands.add_parser(
        "run",
        help="run the tests of the claimed classes against a running node and write reports",
        description="Arguments after `--` go to pytest (for example -x, -k, -v).",
    )
    run.add_argument("--flight", metavar="URL",
                     help="the node's Flight SQL endpoint, grpc://host:port or grpc+tls://...")
    run.add_argument("--node-command", metavar="PATH",
                     help="instead of --flight: an executable the suite starts its nodes with, "
                     "taking the command line of Polder's `polder` (README: \"Nodes the suite "
                     "starts\")")
    run.add_argument("--http", metavar="URL",
                     help="the node's HTTP base URL (health, /conformance, /catalog, /sparql, "
                     "/metrics); without it those requirements cannot pass")
    run.add_argument("--catalog", metavar="NAME",
                     help="the node's SQL catalog (default: discovered from GetObjects)")
    run.add_argument("--data", type=Path, metavar="DIR",
                     help="the folder `fixtures --out` wrote (default: $UDN_DATA_DIR, else the "
                     "current folder when it holds tables.txt)")
    run.add_argument("--classes", required=True, type=_classes, metavar="NAMES",
                     help="the conformance classes the node claims, comma-separated: "
                     "core, catalog, federation, security, privacy, observability, spatial, sensors")
    run.add_argument("--report", type=Path, metavar="FILE.md",
                     help="the certification report in Markdown")
    run.add_argument("--junit", type=Path, metavar="FILE.xml", help="JUnit XML for CI")
    run.add_argument("--json", type=Path, metavar="FILE.json",
                     help="the certification report as JSON")
    run.add_argument("--signing-key", type=Path, metavar="FILE.jwk",
                     help="a private RSA JWK whose public half the node trusts (fixtures write "
                     "DIR/auth/signing-key.jwk); the run mints its good and bad tokens with it "
                     "(security and privacy classes)")
    run.add_argument("--issuer", metavar="ISS", help="the `iss` the node accepts")
    run.add_argument("--audience", metavar="AUD", help="the `aud` the node accepts")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, pytest_args = argv[:at], argv[at + 1 :]
    args = parser().parse_args(argv)
    if args.command == "fixtures":
        return _fixtures(args)
    return _run(args, pytest_args)


if __name__ == "__main__":
    raise SystemExit(main())
