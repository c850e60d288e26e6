"""Access control, bearer tokens (UDN-AUTH-1): every RPC refuses every bad token with the same
message, a valid token is served over ADBC, and `polder token` mints tokens a node accepts.
"""

from __future__ import annotations

import subprocess
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    adbc,
    client,
    default_audience,
    idp,
    OPTIONS,
    strict_node,
    STRICT_POLICY,
    token,
)
from udn_conformance import flightsql as fsql
from udn_conformance import proto, tokens
from udn_conformance.errors import flight_grpc_status


def bad_tokens(idp, anonymous_refused: bool = True) -> dict[str, list[str]]:
    """Each refused credential as the `authorization` header values it is sent as. Without a
    token at all, only a node with no public dataset refuses every RPC (UDN-AUTH-2)."""
    signer, _, _ = idp
    aud = default_audience()
    foreign = tokens.Signer(tokens.Signer.new().key, kid=signer.kid, issuer=signer.issuer)
    unknown_kid = tokens.Signer(signer.key, kid="not-in-the-jwks", issuer=signer.issuer)
    valid = signer.token(aud, groups=["mobility"])
    t = int(time.time())
    cases = {
        "missing token": [],
        "garbage": ["Bearer not-a-jwt"],
        "not a bearer scheme": [f"Basic {valid}"],
        "alg none": [f"Bearer {tokens.alg_none(aud, signer.issuer, signer.kid)}"],
        "HS256 keyed with the RSA public key": [
            f"Bearer {tokens.hs256_with_public_key(signer, aud)}"
        ],
        "unknown kid": [f"Bearer {unknown_kid.token(aud)}"],
        "foreign key": [f"Bearer {foreign.token(aud)}"],
        "expired": [f"Bearer {signer.token(aud, exp=t - 3600, nbf=t - 7200)}"],
        "not yet valid": [f"Bearer {signer.token(aud, nbf=t + 3600, exp=t + 7200)}"],
        "wrong issuer": [f"Bearer {signer.token(aud, iss='https://evil.example')}"],
        "wrong audience": [f"Bearer {signer.token('not-' + aud)}"],
        "no exp": [f"Bearer {signer.token(aud, exp=None)}"],
        "no sub": [f"Bearer {signer.token(aud, sub=None)}"],
        "exp as a string": [f"Bearer {signer.token(aud, exp=str(t + 600))}"],
        "groups as a string": [f"Bearer {signer.token(aud, groups='mobility')}"],
        "oversized token": [f"Bearer {signer.token(aud, pad='x' * 7_000)}"],
        "two authorization headers": [f"Bearer {valid}", f"Bearer {valid}"],
    }
    if not anonymous_refused:
        del cases["missing token"]
    return cases


def rpcs(c: flight.FlightClient, ticket: flight.Ticket, handle: bytes):
    """One call of every kind a Flight SQL client makes, each a thunk."""
    statement = fsql.descriptor_for_statement("SELECT count(*) FROM traffic_counts")
    prepared = fsql.descriptor("CommandPreparedStatementQuery", [(1, handle)])
    create = flight.Action(
        "CreatePreparedStatement",
        proto.pack_any(
            "ActionCreatePreparedStatementRequest",
            proto.encode([(1, "SELECT count(*) FROM traffic_counts")]),
        ),
    )

    def do_put():
        schema = pa.schema([("p", pa.int64())])
        writer, reader = c.do_put(prepared, schema, OPTIONS)
        writer.write_batch(pa.record_batch([pa.array([1])], schema=schema))
        writer.done_writing()
        reader.read()
        writer.close()

    return {
        "GetFlightInfo(CommandStatementQuery)": lambda: c.get_flight_info(statement, OPTIONS),
        "GetFlightInfo(CommandGetTables)": lambda: c.get_flight_info(
            fsql.descriptor("CommandGetTables", []), OPTIONS
        ),
        "GetFlightInfo(CommandGetSqlInfo)": lambda: c.get_flight_info(
            fsql.descriptor("CommandGetSqlInfo", []), OPTIONS
        ),
        "GetSchema": lambda: c.get_schema(statement, OPTIONS),
        "DoGet": lambda: c.do_get(ticket, OPTIONS).read_all(),
        "DoAction(CreatePreparedStatement)": lambda: list(c.do_action(create, OPTIONS)),
        "DoPut": do_put,
        "ListFlights": lambda: list(c.list_flights(options=OPTIONS)),
        "ListActions": lambda: c.list_actions(OPTIONS),
        "Handshake": lambda: c.authenticate_basic_token("alice", "secret", OPTIONS),
    }


@pytest.mark.requirement("UDN-AUTH-1")
def test_every_rpc_refuses_every_bad_token(strict_node, idp):
    good = client(strict_node, f"Bearer {token(idp, groups=['mobility'])}")
    info = good.get_flight_info(
        fsql.descriptor_for_statement("SELECT count(*) FROM traffic_counts"), OPTIONS
    )
    ticket = info.endpoints[0].ticket
    handle = fsql.Prepared(good, "SELECT count(*) FROM traffic_counts WHERE car > ?").handle
    failures = []
    # The node under certification serves its other tables to anyone (the certification
    # grants), so a call without a token is not refused there: only a bad token is.
    anonymous_refused = strict_node.process is not None
    for case, headers in bad_tokens(idp, anonymous_refused).items():
        c = client(strict_node, *headers)
        for rpc, call in rpcs(c, ticket, handle).items():
            try:
                call()
            except Exception as err:  # noqa: BLE001 - the status is what is checked
                status = flight_grpc_status(err)
                text = str(err)
                if status != "Unauthenticated":
                    failures.append(f"{case} / {rpc}: {status}: {text[:200]}")
                elif "a valid bearer token is required" not in text:
                    failures.append(f"{case} / {rpc}: unexpected message {text[:200]}")
                elif any(h.split(" ", 1)[-1][:40] in text for h in headers):
                    failures.append(f"{case} / {rpc}: the message echoes the token")
            else:
                failures.append(f"{case} / {rpc}: served")
        c.close()
    assert not failures, "\n".join(failures)
    # The node kept serving: the valid token still works, over ADBC too.
    assert good.do_get(ticket, OPTIONS).read_all().num_rows == 1
    with adbc(strict_node, token(idp, groups=["mobility"])) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM traffic_counts WHERE car > ?", parameters=(0,))
        assert cur.fetchone()[0] > 0
    assert strict_node.alive()


@pytest.mark.requirement("UDN-AUTH-1")
def test_a_valid_token_is_served_through_adbc(strict_node, idp):
    with adbc(strict_node, token(idp, groups=["mobility"])) as conn:
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = {
            t["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for t in schema["db_schema_tables"] or []
            if schema["db_schema_name"] == "public"
        }
        if strict_node.process is not None:
            assert tables == {"traffic_counts"}
        else:  # the node under certification: its public tables as well
            assert "traffic_counts" in tables
        schema = conn.adbc_get_table_schema("traffic_counts", db_schema_filter="public")
        assert "car" in schema.names
        with conn.cursor() as cur:
            cur.execute("SELECT sum(car) FROM traffic_counts")
            assert cur.fetchone()[0] > 0


@pytest.mark.requirement("UDN-AUTH-1")
def test_polder_token_mints_tokens_a_node_accepts(polder_bin, launcher, tmp_path):
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    keys = tmp_path / "keys"
    subprocess.run([polder_bin, "token", "keygen", "--out", keys], check=True, timeout=60)
    policy = tmp_path / "policy.toml"
    policy.write_text(STRICT_POLICY)
    node = launcher.spawn(
        ["--jwks", str(keys / "jwks.json"), "--issuer", "https://dev.test", "--audience",
         "utrecht", "--policy", str(policy)],
        name="utrecht",
    )  # fmt: skip
    minted = subprocess.run(
        [polder_bin, "token", "mint", "--key", keys / "token-key.pem", "--issuer",
         "https://dev.test", "--audience", "utrecht", "--subject", "dev", "--group", "mobility"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    with adbc(node, minted) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM traffic_counts")
        assert cur.fetchone()[0] > 0
    # polder sql passes the token too; without it the node refuses.
    sql = [polder_bin, "sql", "--node", f"utrecht={node.flight_url}", "--format", "csv", "-c",
           "SELECT count(*) AS n FROM utrecht.public.traffic_counts"]  # fmt: skip
    ok = subprocess.run([*sql, "--token", minted], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert int(ok.stdout.splitlines()[1]) > 0
    refused = subprocess.run(sql, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    # A key already there is never overwritten.
    again = subprocess.run(
        [polder_bin, "token", "keygen", "--out", keys], capture_output=True, text=True, timeout=60
    )
    assert again.returncode != 0 and "existing key is kept" in again.stderr
