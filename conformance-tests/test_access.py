"""Access control (UDN-AUTH): bearer tokens on every RPC, default deny, public datasets,
ordered rules on claims, denied columns, purpose binding, and policy validation at startup.

Two nodes serve the sample city "utrecht" with authentication. The strict node has no public
dataset, so it refuses anonymous callers outright; the open node declares `air_quality` public
and grants `traffic_counts` by rules. The suite plays identity provider: its RSA key's JWKS is
the nodes' JWKS, and PyJWT signs the tokens.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
import time

import adbc_driver_flightsql as flightsql
import adbc_driver_flightsql.dbapi
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from udn_conformance import flightsql as fsql
from udn_conformance import proto, tokens
from udn_conformance.errors import adbc_grpc_status, flight_grpc_status
from udn_conformance.node import NodeStartError

AUDIENCE = "utrecht"
OPTIONS = fsql.OPTIONS

STRICT_POLICY = """
[[dataset]]
name = "traffic_counts"
  [[dataset.rule]]
  groups = ["mobility"]
  access = "raw"
"""

OPEN_POLICY = """
[[dataset]]
name = "air_quality"
public = true

[[dataset]]
name = "traffic_counts"
purposes = ["research", "mobility-planning"]

  [[dataset.rule]]
  subjects = ["mallory"]
  access = "deny"

  [[dataset.rule]]
  groups = ["mobility"]
  access = "raw"
  deny_columns = ["segment_id", "v85"]

  [[dataset.rule]]
  organisations = ["gemeente-utrecht"]
  access = "raw"
"""


class Bearer(flight.ClientMiddlewareFactory):
    """Sends the given `authorization` header value(s) on every call."""

    def __init__(self, *values: str):
        self.values = list(values)

    def start_call(self, info):
        values = self.values

        class _Middleware(flight.ClientMiddleware):
            def sending_headers(self):
                return {"authorization": values} if values else {}

        return _Middleware()


def client(node, *values: str) -> flight.FlightClient:
    return flight.FlightClient(node.flight_url, middleware=[Bearer(*values)])


def adbc(node, token: str | None):
    options = {flightsql.DatabaseOptions.TIMEOUT_QUERY.value: "60"}
    if token is not None:
        options[flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    return adbc_driver_flightsql.dbapi.connect(node.flight_url, db_kwargs=options, autocommit=True)


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    directory = tmp_path_factory.mktemp("idp")
    signer = tokens.Signer.new()
    return signer, signer.write_jwks(directory / "jwks.json"), directory


def auth_args(idp, policy_text: str, name: str, audience: str = AUDIENCE) -> list[str]:
    _, jwks, directory = idp
    policy = directory / f"{name}.toml"
    policy.write_text(policy_text)
    return [
        "--jwks", str(jwks), "--issuer", tokens.ISSUER, "--audience", audience,
        "--policy", str(policy),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def strict_node(launcher, idp):
    return launcher.spawn(auth_args(idp, STRICT_POLICY, "strict"), name="utrecht")


@pytest.fixture(scope="module")
def open_node(launcher, idp):
    return launcher.spawn(auth_args(idp, OPEN_POLICY, "open"), name="utrecht")


def token(idp, audience: str | list[str] = AUDIENCE, **claims) -> str:
    signer, _, _ = idp
    return signer.token(audience, **claims)


def bad_tokens(idp) -> dict[str, list[str]]:
    """Each refused credential as the `authorization` header values it is sent as."""
    signer, _, _ = idp
    foreign = tokens.Signer.new(kid=signer.kid)  # same kid, another key
    unknown_kid = tokens.Signer(signer.key, kid="not-in-the-jwks")
    valid = signer.token(AUDIENCE, groups=["mobility"])
    t = int(time.time())
    return {
        "missing token": [],
        "garbage": ["Bearer not-a-jwt"],
        "not a bearer scheme": [f"Basic {valid}"],
        "alg none": [f"Bearer {tokens.alg_none(AUDIENCE)}"],
        "HS256 keyed with the RSA public key": [
            f"Bearer {tokens.hs256_with_public_key(signer, AUDIENCE)}"
        ],
        "unknown kid": [f"Bearer {unknown_kid.token(AUDIENCE)}"],
        "foreign key": [f"Bearer {foreign.token(AUDIENCE)}"],
        "expired": [f"Bearer {signer.token(AUDIENCE, exp=t - 3600, nbf=t - 7200)}"],
        "not yet valid": [f"Bearer {signer.token(AUDIENCE, nbf=t + 3600, exp=t + 7200)}"],
        "wrong issuer": [f"Bearer {signer.token(AUDIENCE, iss='https://evil.example')}"],
        "wrong audience": [f"Bearer {signer.token('rotterdam')}"],
        "no exp": [f"Bearer {signer.token(AUDIENCE, exp=None)}"],
        "no sub": [f"Bearer {signer.token(AUDIENCE, sub=None)}"],
        "exp as a string": [f"Bearer {signer.token(AUDIENCE, exp=str(t + 600))}"],
        "groups as a string": [f"Bearer {signer.token(AUDIENCE, groups='mobility')}"],
        "oversized token": [f"Bearer {signer.token(AUDIENCE, pad='x' * 7_000)}"],
        "two authorization headers": [f"Bearer {valid}", f"Bearer {valid}"],
    }


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
    for case, headers in bad_tokens(idp).items():
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
        assert tables == {"traffic_counts"}
        schema = conn.adbc_get_table_schema("traffic_counts", db_schema_filter="public")
        assert "car" in schema.names
        with conn.cursor() as cur:
            cur.execute("SELECT sum(car) FROM traffic_counts")
            assert cur.fetchone()[0] > 0


@pytest.mark.requirement("UDN-AUTH-2")
def test_anonymous_callers_read_public_datasets_only(open_node, idp):
    with adbc(open_node, None) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM air_quality")
        assert cur.fetchone()[0] > 0
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert {r[0] for r in cur.fetchall()} == {"air_quality"}
        cur.execute("SHOW TABLES")
        listed = {r[2] for r in cur.fetchall() if r[1] == "public"}
        assert listed == {"air_quality"}
        for sql in ["SELECT * FROM traffic_counts", "SELECT count(*) FROM neighbourhoods"]:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute(sql)
                cur.fetchall()
            assert adbc_grpc_status(err.value) == "Unauthenticated", str(err.value)


@pytest.mark.requirement("UDN-AUTH-2")
def test_datasets_without_a_grant_are_denied_and_unlisted(open_node, idp):
    stranger = token(idp, sub="eve", groups=["parks"], purpose="research")
    with adbc(open_node, stranger) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert {r[0] for r in cur.fetchall()} == {"air_quality"}
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = {
            t["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for t in schema["db_schema_tables"] or []
        }
        assert "traffic_counts" not in names and "neighbourhoods" not in names
        for sql in [
            "SELECT count(*) FROM traffic_counts",
            "SELECT * FROM utrecht.public.neighbourhoods",
            "EXPLAIN SELECT * FROM traffic_counts",
            "SELECT a.pm2_5 FROM air_quality a JOIN traffic_counts t ON a.timestamp = t.hour",
        ]:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute(sql)
                cur.fetchall()
            assert adbc_grpc_status(err.value) == "PermissionDenied", sql
            assert "traffic_counts" in str(err.value) or "neighbourhoods" in str(err.value)


@pytest.mark.requirement("UDN-AUTH-3")
def test_first_matching_rule_decides(open_node, idp):
    # mallory is in the group too, but the deny rule comes first.
    mallory = token(idp, sub="mallory", groups=["mobility"], purpose="research")
    with adbc(open_node, mallory) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT count(*) FROM traffic_counts")
            cur.fetchall()
        assert adbc_grpc_status(err.value) == "PermissionDenied"
        assert "rule 1" in str(err.value)
    clerk = token(idp, sub="bob", org="gemeente-utrecht", purpose="research")
    with adbc(open_node, clerk) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(DISTINCT segment_id) FROM traffic_counts")
        assert cur.fetchone()[0] > 0


@pytest.mark.requirement("UDN-AUTH-3")
def test_denied_columns_exist_nowhere(open_node, idp):
    analyst = token(idp, sub="alice", groups=["mobility"], purpose="research")
    denied = {"segment_id", "v85"}
    with adbc(open_node, analyst) as conn:
        schema = conn.adbc_get_table_schema("traffic_counts", db_schema_filter="public")
        assert not denied & set(schema.names) and "car" in schema.names
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM traffic_counts LIMIT 5")
            assert not denied & {d[0] for d in cur.description}
            cur.fetchall()
            cur.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'traffic_counts'"
            )
            assert not denied & {r[0] for r in cur.fetchall()}
            cur.execute("EXPLAIN SELECT * FROM traffic_counts")
            plan = " ".join(str(v) for row in cur.fetchall() for v in row)
            assert "segment_id" not in plan and "v85" not in plan, plan
            for sql in [
                "SELECT segment_id FROM traffic_counts",
                "SELECT count(*) FROM traffic_counts WHERE v85 > 30",
                "SELECT car FROM traffic_counts ORDER BY segment_id",
            ]:
                with pytest.raises(adbc_driver_manager.Error) as err:
                    cur.execute(sql)
                    cur.fetchall()
                assert adbc_grpc_status(err.value) in {"NotFound", "InvalidArgument"}, sql
            # Visible columns answer as usual, filters included.
            cur.execute("SELECT sum(car) FROM traffic_counts WHERE bike > 0")
            assert cur.fetchone()[0] > 0


@pytest.mark.requirement("UDN-AUTH-4")
def test_purpose_binding(open_node, idp):
    for purpose in [None, "marketing"]:
        t = token(idp, sub="alice", groups=["mobility"], purpose=purpose)
        with adbc(open_node, t) as conn, conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute("SELECT count(*) FROM traffic_counts")
                cur.fetchall()
            assert adbc_grpc_status(err.value) == "PermissionDenied"
            assert "purposes" in str(err.value)
            # The public dataset needs no purpose.
            cur.execute("SELECT count(*) FROM air_quality")
            assert cur.fetchone()[0] > 0
    t = token(idp, sub="alice", groups=["mobility"], purpose="mobility-planning")
    with adbc(open_node, t) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM traffic_counts")
        assert cur.fetchone()[0] > 0


@pytest.mark.requirement("UDN-AUTH-5")
@pytest.mark.parametrize(
    "policy, expected",
    [
        ('[[dataset]]\nname = "traffic_counts"\nsecret = true\n', "unknown field `secret`"),
        ('[[dataset]]\nname = "parking"\n', "dataset 'parking' is not served"),
        (
            '[[dataset]]\nname = "traffic_counts"\n[[dataset.rule]]\naccess = "raw"\n'
            'deny_columns = ["segmentid"]\n',
            "column 'segmentid'",
        ),
        ('[[dataset]]\nname = "air_quality"\npublic = true\npurposes = ["x"]\n', "purposes"),
        (
            '[[dataset]]\nname = "traffic_counts"\n[[dataset.rule]]\naccess = "raw"\n'
            'row_filter = "neighbourhood_code = $team"\n',
            "unknown parameter $team",
        ),
        (
            '[[dataset]]\nname = "traffic_counts"\n[[dataset.rule]]\naccess = "raw"\n'
            'row_filter = "car + 1"\n',
            "must be a condition",
        ),
        (
            '[[dataset]]\nname = "traffic_counts"\n[[dataset.rule]]\naccess = "raw"\n'
            'masks = { car = "neighbourhood_code" }\n',
            "not the same kind of value",
        ),
    ],
    ids=[
        "unknown key", "unknown dataset", "unknown column", "public with purposes",
        "unknown parameter", "filter not a condition", "mask of another kind",
    ],
)
def test_a_bad_policy_stops_the_node(launcher, idp, policy, expected):
    with pytest.raises(NodeStartError) as err:
        launcher.spawn(auth_args(idp, policy, "bad"), name="utrecht")
    assert err.value.returncode not in (0, None)
    assert expected in err.value.stderr, err.value.stderr[-2000:]


@pytest.mark.requirement("UDN-AUTH-5")
@pytest.mark.parametrize(
    "jwks, expected",
    [
        (None, "cannot read the JWKS"),
        ("not json", "is not valid"),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}', "no usable signing key"),
    ],
    ids=["missing JWKS", "not a JWKS", "only an HMAC key"],
)
def test_a_bad_jwks_stops_the_node(launcher, tmp_path, jwks, expected):
    path = tmp_path / "jwks.json"
    if jwks is not None:
        path.write_text(jwks)
    policy = tmp_path / "policy.toml"
    policy.write_text(STRICT_POLICY)
    args = ["--jwks", str(path), "--issuer", tokens.ISSUER, "--audience", AUDIENCE,
            "--policy", str(policy)]  # fmt: skip
    with pytest.raises(NodeStartError) as err:
        launcher.spawn(args, name="utrecht")
    assert expected in err.value.stderr, err.value.stderr[-2000:]


@pytest.mark.requirement("UDN-AUTH-5")
def test_incomplete_authentication_flags_stop_the_node(launcher, idp):
    _, jwks, _ = idp
    with pytest.raises(NodeStartError) as err:
        launcher.spawn(["--jwks", str(jwks), "--issuer", tokens.ISSUER], name="utrecht")
    assert "--audience" in err.value.stderr, err.value.stderr[-2000:]


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


COORDINATOR_POLICY = """
[[dataset]]
name = "air_quality"
public = true
"""

BOTH = ["amsterdam", "utrecht"]


@pytest.fixture(scope="module")
def coordinator(launcher, idp, strict_node):
    """amsterdam, with authentication of its own, federating the strict utrecht node."""
    args = auth_args(idp, COORDINATOR_POLICY, "coordinator", audience="amsterdam")
    return launcher.spawn([*args, "--peer", f"utrecht={strict_node.flight_url}"], name="amsterdam")


def query_one(node, t: str | None, sql: str):
    with adbc(node, t) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall(), [d[0] for d in cur.description]


def refused(node, t: str | None, sql: str) -> adbc_driver_manager.Error:
    with adbc(node, t) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute(sql)
            cur.fetchall()
    return err.value


@pytest.mark.requirement("UDN-AUTH-6")
def test_a_coordinator_forwards_the_callers_token(coordinator, strict_node, idp):
    analyst = token(idp, audience=BOTH, groups=["mobility"])
    sql = "SELECT count(*), sum(car) FROM utrecht.public.traffic_counts WHERE bike > 2"
    direct, _ = query_one(strict_node, token(idp, groups=["mobility"]), sql)
    through, _ = query_one(coordinator, analyst, sql)
    assert through == direct and direct[0][0] > 0
    # The caller's own data and the peer's, in one query.
    joined, _ = query_one(
        coordinator,
        analyst,
        "SELECT count(*) FROM (SELECT date_trunc('hour', timestamp) AS h, avg(pm2_5) AS p "
        "FROM amsterdam.public.air_quality GROUP BY 1) a JOIN (SELECT hour, sum(car) AS c "
        "FROM utrecht.public.traffic_counts GROUP BY 1) t ON a.h = t.hour",
    )
    assert joined[0][0] > 0


def listed_tables(node, t: str, catalog: str) -> tuple[set, set]:
    """The tables `catalog` lists for the caller: by ADBC's get_objects, by information_schema."""
    with adbc(node, t) as conn:
        objects = conn.adbc_get_objects(catalog_filter=catalog, depth="tables").read_all()
        by_objects = {
            table["table_name"]
            for entry in objects.to_pylist()
            for schema in entry["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        }
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_catalog = ? AND table_schema <> 'information_schema'",
                (catalog,),
            )
            by_sql = {row[0] for row in cur.fetchall()}
    return by_objects, by_sql


@pytest.mark.requirement("UDN-AUTH-6")
def test_a_coordinator_lists_what_each_peer_grants_the_caller(coordinator, idp):
    analyst = token(idp, audience=BOTH, groups=["mobility"])
    for listed in listed_tables(coordinator, analyst, "utrecht"):
        assert "traffic_counts" in listed and "air_quality" not in listed, listed
    # utrecht grants an outsider nothing, and lists nothing for them.
    outsider = token(idp, audience=BOTH, groups=["parks"])
    assert listed_tables(coordinator, outsider, "utrecht") == (set(), set())


@pytest.mark.requirement("UDN-AUTH-6")
def test_the_peers_policy_decides_through_a_coordinator(coordinator, idp):
    # Not in the group utrecht grants: utrecht refuses, and says so through amsterdam.
    outsider = token(idp, audience=BOTH, groups=["parks"])
    err = refused(coordinator, outsider, "SELECT count(*) FROM utrecht.public.traffic_counts")
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "utrecht" in str(err)
    # A token for amsterdam alone is not valid at utrecht.
    local = token(idp, audience="amsterdam", groups=["mobility"])
    err = refused(coordinator, local, "SELECT count(*) FROM utrecht.public.traffic_counts")
    assert adbc_grpc_status(err) == "Unauthenticated", str(err)
    assert "utrecht" in str(err)
    # Without a token, amsterdam's public data only; utrecht's needs one.
    rows, _ = query_one(coordinator, None, "SELECT count(*) FROM amsterdam.public.air_quality")
    assert rows[0][0] > 0
    err = refused(coordinator, None, "SELECT count(*) FROM utrecht.public.traffic_counts")
    assert adbc_grpc_status(err) == "Unauthenticated", str(err)


AUDITED_POLICY = """
[[dataset]]
name = "air_quality"
public = true

[[dataset]]
name = "traffic_counts"
personal = true
  [[dataset.rule]]
  groups = ["mobility"]
  access = "raw"
  deny_columns = ["v85"]
"""


def audited_node(launcher, idp, polder_bin, directory, log_path):
    keys = directory / "audit-keys"
    if not (keys / "jwks.json").exists():
        subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                       check=True, timeout=60)  # fmt: skip
    args = auth_args(idp, AUDITED_POLICY, "audited")
    args += ["--audit-log", str(log_path), "--audit-key", str(keys / "token-key.pem")]
    return launcher.spawn(args, name="utrecht"), keys / "jwks.json"


def verify(polder_bin, log_path, jwks, *flags):
    return subprocess.run(
        [polder_bin, "audit", "verify", "--log", log_path, "--jwks", jwks, *flags],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def rehash_without_checkpoints(text: str) -> str:
    """What whoever can write the log can do without the key: drop its checkpoints and
    recompute the chain (SHA-256 over the previous hash and the record's JSON, keys sorted)."""
    import hashlib
    import json

    prev, out = bytes(32), []
    records = [json.loads(line) for line in text.splitlines()]
    for seq, record in enumerate((r for r in records if r["kind"] != "checkpoint"), start=1):
        record.pop("hash")
        record["seq"], record["prev"] = seq, prev.hex()
        canonical = json.dumps(dict(sorted(record.items())), separators=(",", ":"),
                               ensure_ascii=False)  # fmt: skip
        prev = hashlib.sha256(prev + canonical.encode()).digest()
        record["hash"] = prev.hex()
        out.append(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(out) + "\n"


@pytest.mark.requirement("UDN-AUTH-7")
def test_every_query_is_audited_without_its_literals(launcher, idp, polder_bin, tmp_path):
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    import hashlib
    import json
    import signal

    log_path = tmp_path / "audit" / "audit.jsonl"
    node, jwks = audited_node(launcher, idp, polder_bin, tmp_path, log_path)
    secret = "BU0344SECRET"
    sql = f"SELECT count(*) FROM traffic_counts WHERE neighbourhood_code <> '{secret}' AND car > 3"
    analyst = token(idp, sub="alice", groups=["mobility"], purpose="research")
    rows, _ = query_one(node, analyst, sql)
    assert rows[0][0] > 0
    refused(node, token(idp, sub="eve", groups=["parks"]), "SELECT * FROM traffic_counts")
    query_one(node, None, "SELECT count(*) FROM air_quality")
    assert node.stop(signal.SIGTERM) == 0

    text = log_path.read_text()
    assert secret not in text
    records = [json.loads(line) for line in text.splitlines()]
    started = [r for r in records if r["kind"] == "query" and r["subject"] == "alice"]
    assert len(started) == 1, records
    query = started[0]
    assert query["purpose"] == "research"
    assert query["statement_sha256"] == hashlib.sha256(sql.encode()).hexdigest()
    assert "?" in query["statement"] and "3" not in query["statement"]
    [dataset] = query["datasets"]
    assert dataset["dataset"] == "utrecht.public.traffic_counts"
    assert dataset["rule"] == 1 and dataset["denied_columns"] == ["v85"]
    assert dataset["personal"] is True
    [end] = [r for r in records if r["kind"] == "query_end" and r["query"] == query["seq"]]
    assert end["outcome"] == "ok" and end["rows_out"] == 1
    assert any(r["kind"] == "refused" and r["subject"] == "eve" and r["outcome"] == "forbidden"
               for r in records)  # fmt: skip
    assert any(r["kind"] == "query" and r["subject"] == "anonymous" for r in records)
    assert records[-1]["kind"] == "checkpoint"

    ok = verify(polder_bin, log_path, jwks)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr
    lines = text.splitlines(keepends=True)
    tampered = {
        "changed": text.replace('"subject":"eve"', '"subject":"bob"'),
        "removed": "".join(lines[:1] + lines[2:]),
        "cut off": "".join(lines[:2]),
    }
    for case, content in tampered.items():
        assert content != text, case
        log_path.write_text(content)
        bad = verify(polder_bin, log_path, jwks)
        assert bad.returncode != 0 and "damaged at line" in bad.stderr, (case, bad.stderr)
    log_path.write_text(text)
    assert verify(polder_bin, log_path, jwks).returncode == 0

    # A chain without its checkpoints and head file, recomputed: unbroken, but unsigned.
    head = Path(f"{log_path}.head")
    head_text = head.read_text()
    head.unlink()
    log_path.write_text(rehash_without_checkpoints(text))
    forged = verify(polder_bin, log_path, jwks)
    assert forged.returncode != 0, forged.stdout
    assert "no signed checkpoint" in forged.stderr and "damaged" not in forged.stderr, forged.stderr
    assert "signed: nothing" in forged.stdout, forged.stdout
    allowed = verify(polder_bin, log_path, jwks, "--allow-unsigned")
    assert allowed.returncode == 0, allowed.stderr
    assert "warning" in allowed.stderr and "no signed checkpoint" in allowed.stderr
    assert "UNSIGNED" in allowed.stdout, allowed.stdout
    log_path.write_text(text)
    head.write_text(head_text)
    normal = verify(polder_bin, log_path, jwks)
    assert normal.returncode == 0 and "intact" in normal.stdout, normal.stderr
    assert "head file: names checkpoint record" in normal.stdout, normal.stdout


@pytest.mark.requirement("UDN-AUTH-7")
def test_the_audit_bounds_what_callers_make_it_write(launcher, idp, polder_bin, tmp_path):
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    import hashlib
    import json
    import signal

    log_path = tmp_path / "audit" / "audit.jsonl"
    node, jwks = audited_node(launcher, idp, polder_bin, tmp_path, log_path)
    # An anonymous 10 MB statement, refused for its length: a few kilobytes of log.
    huge = "SELECT * FROM air_quality WHERE station IN (" + "'BSN123456789', " * 700_000 + "'x')"
    assert len(huge) > 10_000_000
    before = log_path.stat().st_size if log_path.exists() else 0
    err = refused(node, None, huge)
    assert adbc_grpc_status(err) == "InvalidArgument", str(err)
    assert log_path.stat().st_size - before < 8192
    # Thousands of anonymous refusals in a burst: a bounded number of records and a count.
    flood = 1500
    started = time.monotonic()
    with adbc(node, None) as conn, conn.cursor() as cur:
        for _ in range(flood):
            with pytest.raises(adbc_driver_manager.Error):
                cur.execute("SELECT * FROM traffic_counts")
                cur.fetchall()
    elapsed = time.monotonic() - started
    assert node.stop(signal.SIGTERM) == 0

    text = log_path.read_text()
    assert "BSN123456789" not in text
    records = [json.loads(line) for line in text.splitlines()]
    [long] = [r for r in records if r.get("statement_bytes") == len(huge)]
    assert long["kind"] == "refused" and long["subject"] == "anonymous"
    assert long["statement_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert long["statement_truncated"] is True and len(long["statement"].encode()) <= 4096
    anonymous = [r for r in records if r["kind"] == "refused" and r["subject"] == "anonymous"]
    summaries = [r for r in records if r["kind"] == "refusals_suppressed"]
    # Defaults: a burst of 100, then 10 a second; a count at most once a second.
    assert len(anonymous) <= 100 + 10 * elapsed + 1, (len(anonymous), elapsed)
    assert 0 < len(summaries) <= elapsed + 2, (len(summaries), elapsed)
    assert len(anonymous) + sum(r["count"] for r in summaries) == flood + 1
    assert all(r["subject"] == "anonymous" for r in summaries)
    ok = verify(polder_bin, log_path, jwks)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stderr


@pytest.mark.requirement("UDN-AUTH-7")
def test_personal_data_is_refused_when_the_audit_cannot_be_written(
    launcher, idp, polder_bin, tmp_path
):
    if polder_bin is None or not Path("/dev/full").exists():
        pytest.skip("needs the polder binary and /dev/full")
    node, _ = audited_node(launcher, idp, polder_bin, tmp_path, Path("/dev/full"))
    analyst = token(idp, sub="alice", groups=["mobility"])
    err = refused(node, analyst, "SELECT count(*) FROM traffic_counts")
    assert adbc_grpc_status(err) == "Unavailable" and "audit log" in str(err), str(err)
    # Data that is not personal is still served, and the node keeps serving.
    rows, _ = query_one(node, analyst, "SELECT count(*) FROM air_quality")
    assert rows[0][0] > 0
    assert node.alive()


def aggregate_policy(k: int, on_violation: str = "suppress") -> str:
    return f"""
[[dataset]]
name = "air_quality"
personal = true
  [dataset.aggregate]
  unit = "sensor_id"
  min_group_size = {k}
  dimensions = ["neighbourhood_code", "sensor_type", "timestamp"]
  functions = ["count", "avg", "sum"]
  on_violation = "{on_violation}"
  [[dataset.rule]]
  groups = ["research"]
  access = "aggregate"
"""


K_SENSORS = 2


@pytest.fixture(scope="module")
def sensor_files(polder_bin, tmp_path_factory):
    """The sample data as files, so DuckDB sees exactly what the node serves."""
    if polder_bin is None:
        pytest.skip("needs the polder binary")
    out = tmp_path_factory.mktemp("sample")
    subprocess.run([polder_bin, "demo-data", "--out", out], check=True, capture_output=True,
                   timeout=120)  # fmt: skip
    return out / "utrecht" / "air_quality.csv"


@pytest.fixture(scope="module")
def aggregate_node(launcher, idp, sensor_files):
    args = auth_args(idp, aggregate_policy(K_SENSORS), "aggregate")
    return launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")


def duckdb_groups(path, k: int) -> tuple[dict, set]:
    import duckdb

    con = duckdb.connect()
    rows = con.sql(
        f"SELECT neighbourhood_code, count(*), count(DISTINCT sensor_id) FROM "
        f"read_csv_auto('{path}') GROUP BY 1"
    ).fetchall()
    return {zone: n for zone, n, units in rows if units >= k}, {zone for zone, _, u in rows if u < k}


PER_NEIGHBOURHOOD = (
    "SELECT neighbourhood_code, count(*) AS n FROM air_quality GROUP BY neighbourhood_code"
)


@pytest.mark.requirement("UDN-AUTH-8")
def test_aggregate_only_releases_exactly_the_large_groups(aggregate_node, idp, sensor_files):
    released, small = duckdb_groups(sensor_files, K_SENSORS)
    assert released and small, "the sample data must have groups on both sides of k"
    researcher = token(idp, groups=["research"])
    rows, _ = query_one(aggregate_node, researcher, PER_NEIGHBOURHOOD)
    assert dict(rows) == released
    # HAVING cannot bring a small group back.
    rows, _ = query_one(aggregate_node, researcher, PER_NEIGHBOURHOOD + " HAVING count(*) < 1000")
    assert not {zone for zone, _ in rows} & small


# Attacks on aggregate-only data that single queries within the thresholds made possible: each
# reconstructs one sensor or one reading unless its shape is refused.
AGGREGATE_ATTACKS = [
    # Enumerates sensor ids and bisects one exact reading, a query per bound.
    "SELECT count(CASE WHEN sensor_id = 1 AND pm2_5 <= 12.5 THEN 1 END) FROM air_quality",
    "SELECT sum(CASE WHEN sensor_id = 1 THEN pm2_5 ELSE 0 END) FROM air_quality",
    "SELECT neighbourhood_code, avg(pm2_5 * CAST(sensor_id = 1 AS DOUBLE)) FROM air_quality "
    "GROUP BY 1",
    # One sensor's mean, differenced against the whole.
    "SELECT avg(pm2_5) FROM air_quality q WHERE NOT EXISTS (SELECT 1 WHERE q.sensor_id = 1)",
    "SELECT count(*) FROM air_quality q WHERE q.neighbourhood_code IN "
    "(SELECT neighbourhood_code FROM air_quality GROUP BY 1)",
    # A condition on a measure counts the sensors below a bound.
    "SELECT count(*) FROM air_quality WHERE pm2_5 <= 12.5",
    "SELECT neighbourhood_code, count(*) FILTER (WHERE pm2_5 > 25) FROM air_quality GROUP BY 1",
    "SELECT count(*) FROM air_quality a JOIN (VALUES (1)) v(s) ON a.sensor_id = v.s",
]
AGGREGATE_ATTACK_IDS = [
    "conditional count bisects a reading", "conditional sum", "expression inside avg",
    "correlated NOT EXISTS", "subquery in a filter", "filter on a measure",
    "aggregate FILTER on a measure", "join with constant rows",
]


@pytest.mark.requirement("UDN-AUTH-8")
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM air_quality LIMIT 5",
        "SELECT sensor_id, count(*) FROM air_quality GROUP BY sensor_id",
        "SELECT neighbourhood_code, max(pm2_5) FROM air_quality GROUP BY 1",
        "SELECT DISTINCT neighbourhood_code FROM air_quality",
        "SELECT lat, count(*) FROM air_quality GROUP BY lat",
        "EXPLAIN ANALYZE " + PER_NEIGHBOURHOOD,
        PER_NEIGHBOURHOOD.replace("GROUP BY", "WHERE sensor_id <> 1 GROUP BY"),
        *AGGREGATE_ATTACKS,
    ],
    ids=[
        "raw rows", "group by the unit", "max", "distinct", "not a dimension", "explain analyze",
        "differencing by the unit", *AGGREGATE_ATTACK_IDS,
    ],
)
def test_aggregate_only_refuses_what_could_single_out(aggregate_node, idp, sql):
    err = refused(aggregate_node, token(idp, groups=["research"]), sql)
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "air_quality" in str(err)


@pytest.mark.requirement("UDN-AUTH-8")
def test_aggregate_only_holds_through_a_coordinator(launcher, idp, aggregate_node, sensor_files):
    args = auth_args(idp, COORDINATOR_POLICY, "aggregate-coordinator", audience="amsterdam")
    coordinator = launcher.spawn(
        [*args, "--peer", f"utrecht={aggregate_node.flight_url}"], name="amsterdam"
    )
    released, _ = duckdb_groups(sensor_files, K_SENSORS)
    t = token(idp, audience=BOTH, groups=["research"])
    rows, _ = query_one(coordinator, t, PER_NEIGHBOURHOOD.replace(
        "FROM air_quality", "FROM utrecht.public.air_quality"))  # fmt: skip
    assert dict(rows) == released
    err = refused(coordinator, t, "SELECT * FROM utrecht.public.air_quality LIMIT 5")
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "utrecht" in str(err)
    # The attacks single queries made possible are refused through the coordinator too: the
    # peer applies its own policy to whatever part of the query reaches it.
    for attack in AGGREGATE_ATTACKS:
        sql = attack.replace("FROM air_quality", "FROM utrecht.public.air_quality")
        err = refused(coordinator, t, sql)
        assert adbc_grpc_status(err) == "PermissionDenied", (sql, str(err))


@pytest.mark.requirement("UDN-AUTH-8")
def test_refuse_mode_fails_a_query_with_a_small_group(launcher, idp, sensor_files):
    args = auth_args(idp, aggregate_policy(K_SENSORS, "refuse"), "aggregate-refuse")
    node = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    researcher = token(idp, groups=["research"])
    err = refused(node, researcher, PER_NEIGHBOURHOOD)
    assert adbc_grpc_status(err) == "PermissionDenied", str(err)
    assert "fewer than 2" in str(err)
    # Every sensor type has enough sensors: answered.
    rows, _ = query_one(
        node, researcher, "SELECT sensor_type, count(*) FROM air_quality GROUP BY sensor_type"
    )
    assert len(rows) == 2


def perturbed_policy(k: int) -> str:
    return aggregate_policy(k).replace(
        '  [[dataset.rule]]',
        '  [dataset.aggregate.perturbation]\n  key_file = "cell.key"\n  count_spread = 2\n'
        '  magnitude = 0.5\n  [[dataset.rule]]',
        1,
    )


@pytest.mark.requirement("UDN-AUTH-8")
def test_perturbation_defeats_differencing_directly_and_through_a_coordinator(
    launcher, idp, sensor_files
):
    """With cell-key perturbation, subtracting two allowed answers around a neighbourhood below k
    does not give that neighbourhood's exact values, and asking the same cell again, however
    phrased, gives the same answer. Checked against DuckDB's exact values."""
    import duckdb

    _, _, directory = idp
    (directory / "cell.key").write_bytes(os.urandom(32))
    args = auth_args(idp, perturbed_policy(K_SENSORS), "perturbed")
    peer = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    args = auth_args(idp, COORDINATOR_POLICY, "perturbed-coordinator", audience="amsterdam")
    coordinator = launcher.spawn([*args, "--peer", f"utrecht={peer.flight_url}"], name="amsterdam")
    released, small = duckdb_groups(sensor_files, K_SENSORS)
    large = sorted(released)[0]
    con = duckdb.connect()

    def exact(where: str) -> tuple:
        return con.execute(
            f"SELECT count(*), sum(pm2_5) FROM read_csv_auto('{sensor_files}') WHERE {where}"
        ).fetchone()

    t = token(idp, audience=BOTH, groups=["research"])

    def first(node, sql: str) -> tuple:
        rows, _ = query_one(node, t, sql)
        return rows[0]

    for node, table in [(peer, "air_quality"), (coordinator, "utrecht.public.air_quality")]:
        ask = "SELECT count(*), sum(pm2_5) FROM " + table + " WHERE {where}"
        exact_sums = 0
        for target in sorted(small):
            n1, s1 = first(node, ask.format(where=f"neighbourhood_code IN ('{large}', '{target}')"))
            n0, s0 = first(node, ask.format(where=f"neighbourhood_code = '{large}'"))
            n, s = exact(f"neighbourhood_code = '{target}'")
            assert abs(n1 - n0 - n) <= 4, "a difference is off by more than twice the spread"
            exact_sums += abs((s1 - s0) - s) < 1e-6
            # The same cell asked again, reordered: the same answer.
            again = f"neighbourhood_code = '{target}' OR neighbourhood_code = '{large}'"
            assert first(node, ask.format(where=again)) == (n1, s1), (table, target)
        assert exact_sums == 0, f"{exact_sums} differences gave a small group's exact sum"


GUARDED_POLICY = """
[[dataset]]
name = "air_quality"
personal = true
  [[dataset.rule]]
  roles = ["district-officer"]
  access = "raw"
  row_filter = "array_has($groups, neighbourhood_code)"
  masks = { sensor_id = "NULL", lat = "round(lat, 2)", lon = "round(lon, 2)" }
"""

DISTRICTS = ["BU03440000", "BU03440100"]


@pytest.fixture(scope="module")
def guarded_node(launcher, idp, polder_bin, sensor_files, tmp_path_factory):
    directory = tmp_path_factory.mktemp("guarded")
    keys = directory / "audit-keys"
    subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                   check=True, timeout=60)  # fmt: skip
    log_path = directory / "audit.jsonl"
    args = auth_args(idp, GUARDED_POLICY, "guarded")
    args += ["--audit-log", str(log_path), "--audit-key", str(keys / "token-key.pem")]
    node = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    return node, log_path


def duckdb_one(sql: str):
    import duckdb

    return duckdb.connect().execute(sql).fetchone()


@pytest.mark.requirement("UDN-AUTH-9")
def test_row_filters_and_masks_hold_whatever_the_query(guarded_node, idp, sensor_files):
    node, _ = guarded_node
    officer = token(idp, sub="olga", roles=["district-officer"], groups=DISTRICTS)
    codes = ", ".join(f"'{c}'" for c in DISTRICTS)
    expected_rows, expected_lat = duckdb_one(
        f"SELECT count(*), sum(round(lat, 2)) FROM read_csv_auto('{sensor_files}') "
        f"WHERE neighbourhood_code IN ({codes})"
    )
    assert expected_rows > 0
    rows, _ = query_one(node, officer, "SELECT count(*), sum(lat), count(sensor_id) FROM air_quality")
    count, lat, sensors = rows[0]
    assert count == expected_rows and sensors == 0
    assert lat == pytest.approx(expected_lat, rel=1e-9)
    rows, _ = query_one(node, officer, "SELECT DISTINCT neighbourhood_code FROM air_quality")
    assert sorted(r[0] for r in rows) == DISTRICTS
    # The caller's own filters see masked values and filtered rows only.
    csv = f"read_csv_auto('{sensor_files}')"
    (some_sensor,) = duckdb_one(f"SELECT sensor_id FROM {csv} WHERE neighbourhood_code IN ({codes})")
    (elsewhere,) = duckdb_one(
        f"SELECT neighbourhood_code FROM {csv} WHERE neighbourhood_code NOT IN ({codes})"
    )
    for sql in [
        f"SELECT count(*) FROM air_quality WHERE sensor_id = {some_sensor}",
        "SELECT count(*) FROM air_quality WHERE lat <> round(lat, 2)",
        f"SELECT count(*) FROM air_quality WHERE neighbourhood_code = '{elsewhere}'",
        "SELECT count(*) FROM (SELECT * FROM air_quality ORDER BY pm2_5 DESC LIMIT 100000) t "
        f"WHERE neighbourhood_code NOT IN ({codes})",
    ]:
        rows, _ = query_one(node, officer, sql)
        assert rows == [(0,)], sql
    # Prepared statements bind the caller's parameters; the policy's stay bound to the claims.
    with adbc(node, officer) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM air_quality WHERE neighbourhood_code = ?", (elsewhere,))
        assert cur.fetchall() == [(0,)]
    # A claim value is data, never SQL.
    sly = token(idp, sub="sly", roles=["district-officer"], groups=["x') OR true OR ('"])
    rows, _ = query_one(node, sly, "SELECT count(*) FROM air_quality")
    assert rows == [(0,)]
    nobody = token(idp, sub="nobody", roles=["district-officer"])
    rows, _ = query_one(node, nobody, "SELECT count(*) FROM air_quality")
    assert rows == [(0,)]


@pytest.mark.requirement("UDN-AUTH-9")
def test_row_filters_and_masks_hold_through_a_coordinator(
    launcher, idp, guarded_node, sensor_files
):
    """Generated queries at a coordinator over two guarded peers (three nodes) answer exactly as
    DuckDB does over the filtered, masked rows."""
    import itertools

    import duckdb

    node, _ = guarded_node
    args = auth_args(idp, GUARDED_POLICY, "guarded-rotterdam", audience="rotterdam")
    rotterdam = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="rotterdam")
    nodes = ["amsterdam", "utrecht", "rotterdam"]
    args = auth_args(idp, COORDINATOR_POLICY, "guarded-coordinator", audience="amsterdam")
    coordinator = launcher.spawn(
        [*args, "--peer", f"utrecht={node.flight_url}", "--peer", f"rotterdam={rotterdam.flight_url}"],
        name="amsterdam",
    )  # fmt: skip
    officer = token(idp, audience=nodes, sub="olga", roles=["district-officer"], groups=DISTRICTS)
    codes = ", ".join(f"'{c}'" for c in DISTRICTS)
    oracle = duckdb.connect()
    oracle.execute(
        f"CREATE TABLE visible AS SELECT CAST(NULL AS BIGINT) AS sensor_id, sensor_type, "
        f"round(lat, 2) AS lat, round(lon, 2) AS lon, pm2_5, neighbourhood_code "
        f"FROM read_csv_auto('{sensor_files}') WHERE neighbourhood_code IN ({codes})"
    )
    sources = {
        "utrecht.public.air_quality": "visible",
        "rotterdam.public.air_quality": "visible",
        "(SELECT * FROM utrecht.public.air_quality UNION ALL "
        "SELECT * FROM rotterdam.public.air_quality) AS u": "(SELECT * FROM visible UNION ALL "
        "SELECT * FROM visible) AS u",
    }
    selects = [
        "count(*)", "count(sensor_id)", "count(DISTINCT neighbourhood_code)",
        "round(sum(lat), 4)", "max(lon)", "round(avg(pm2_5), 6)",
    ]  # fmt: skip
    wheres = [
        "", "WHERE sensor_id IS NOT NULL", f"WHERE neighbourhood_code NOT IN ({codes})",
        "WHERE lat <> round(lat, 2)", "WHERE pm2_5 > 10", "WHERE sensor_type = 'SDS011'",
    ]  # fmt: skip
    for (source, expected_source), select, where in itertools.product(sources.items(), selects, wheres):
        sql = f"SELECT {select} FROM {{}} {where}"
        got, _ = query_one(coordinator, officer, sql.format(source))
        [want] = oracle.execute(sql.format(expected_source)).fetchall()
        if isinstance(want[0], float):
            assert got[0][0] == pytest.approx(want[0], rel=1e-9), sql.format(source)
        else:
            assert got[0] == want, sql.format(source)


@pytest.mark.requirement("UDN-AUTH-7")
def test_the_audit_names_filters_masks_and_suppressed_groups(
    launcher, idp, polder_bin, guarded_node, sensor_files, tmp_path
):
    import json
    import signal

    node, log_path = guarded_node
    officer = token(idp, sub="olga", roles=["district-officer"], groups=DISTRICTS)
    query_one(node, officer, "SELECT count(*) FROM air_quality")
    node.stop(signal.SIGTERM)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    [dataset] = [r for r in records if r["kind"] == "query" and r["subject"] == "olga"][-1][
        "datasets"
    ]
    assert dataset["row_filter"] == "array_has($groups, neighbourhood_code)"
    assert dataset["masked_columns"] == ["lat", "lon", "sensor_id"]
    assert "BU0344" not in log_path.read_text(), "claim values bound into filters stay out"

    # Suppressed groups are counted: as many as DuckDB finds below k.
    keys = tmp_path / "keys"
    subprocess.run([polder_bin, "token", "keygen", "--out", keys, "--kid", "audit"],
                   check=True, timeout=60)  # fmt: skip
    log = tmp_path / "aggregate-audit.jsonl"
    args = auth_args(idp, aggregate_policy(K_SENSORS), "aggregate-audited")
    args += ["--audit-log", str(log), "--audit-key", str(keys / "token-key.pem")]
    aggregate = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="utrecht")
    _, small = duckdb_groups(sensor_files, K_SENSORS)
    query_one(aggregate, token(idp, sub="rita", groups=["research"]), PER_NEIGHBOURHOOD)
    aggregate.stop(signal.SIGTERM)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    [start] = [r for r in records if r["kind"] == "query" and r["subject"] == "rita"][-1:]
    [end] = [r for r in records if r["kind"] == "query_end" and r["query"] == start["seq"]]
    assert end["groups_suppressed"] == len(small) > 0, end


HIDDEN_POLICY = """
[[dataset]]
name = "air_quality"
public = true

[[dataset]]
name = "traffic_counts"
hidden = true
  [[dataset.rule]]
  groups = ["mobility"]
  access = "raw"
"""


@pytest.mark.requirement("UDN-AUTH-10")
def test_hidden_datasets_are_left_out_of_public_metadata(launcher, idp):
    import requests

    node = launcher.spawn(auth_args(idp, HIDDEN_POLICY, "hidden"), name="utrecht")
    for path in ["/catalog", "/readyz"]:
        body = requests.get(f"{node.http_url}{path}", timeout=30).text
        assert "traffic_counts" not in body, path
        assert "air_quality" in body, path
    sparql = requests.get(
        f"{node.http_url}/sparql",
        params={"query": "SELECT ?s ?p ?o WHERE { ?s ?p ?o }"},
        headers={"Accept": "application/sparql-results+json"},
        timeout=30,
    )
    assert sparql.status_code == 200 and "traffic_counts" not in sparql.text
    assert "air_quality" in sparql.text
    # Hidden is about metadata only: the granted caller reads it as before.
    rows, _ = query_one(node, token(idp, groups=["mobility"]), "SELECT count(*) FROM traffic_counts")
    assert rows[0][0] > 0
    # To anyone else, naming it gets exactly the answer a missing table gets: no existence
    # oracle, anonymous or authenticated.
    for caller in [None, token(idp, groups=["research"])]:
        hidden = refused(node, caller, "SELECT count(*) FROM traffic_counts")
        missing = refused(node, caller, "SELECT count(*) FROM traffic_countz")
        assert adbc_grpc_status(hidden) == adbc_grpc_status(missing) == "NotFound", str(hidden)
        assert str(hidden).replace("traffic_counts", "traffic_countz") == str(missing)


@pytest.mark.requirement("UDN-AUTH-8")
def test_no_small_group_leaves_through_a_three_node_federation(
    launcher, idp, aggregate_node, sensor_files
):
    """Generated queries at a coordinator over two aggregate-only peers: every group released is
    one DuckDB counts at least k sensors in, or the query is refused."""
    import itertools
    import random

    args = auth_args(idp, aggregate_policy(K_SENSORS), "aggregate-rotterdam", audience="rotterdam")
    rotterdam = launcher.spawn([*args, "--table", f"air_quality={sensor_files}"], name="rotterdam")
    nodes = ["amsterdam", "utrecht", "rotterdam"]
    args = auth_args(idp, COORDINATOR_POLICY, "aggregate-federation", audience="amsterdam")
    coordinator = launcher.spawn(
        [*args, "--peer", f"utrecht={aggregate_node.flight_url}",
         "--peer", f"rotterdam={rotterdam.flight_url}"],
        name="amsterdam",
    )  # fmt: skip
    _, small = duckdb_groups(sensor_files, K_SENSORS)
    t = token(idp, audience=nodes, groups=["research"])

    def large_under(where: str) -> set:
        import duckdb

        return {r[0] for r in duckdb.connect().execute(
            f"SELECT neighbourhood_code FROM read_csv_auto('{sensor_files}') {where} "
            f"GROUP BY 1 HAVING count(DISTINCT sensor_id) >= {K_SENSORS}"
        ).fetchall()}  # fmt: skip

    shapes = [
        "SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1 {having}",
        "SELECT g, v FROM (SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1"
        " {having}) x ORDER BY v LIMIT 50",
        "WITH a AS (SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1 {having})"
        " SELECT g, v FROM a WHERE v IS NOT NULL",
        "SELECT g, v FROM (SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1) u"
        " JOIN (SELECT neighbourhood_code AS h FROM {other} GROUP BY 1) w ON u.g = w.h",
        "SELECT neighbourhood_code AS g, {f} AS v FROM {src} {where} GROUP BY 1 UNION ALL "
        "SELECT neighbourhood_code, {f} FROM {other} {where} GROUP BY 1",
        "SELECT neighbourhood_code AS g, {f} AS v FROM (SELECT * FROM {src}) s {where} GROUP BY 1",
    ]
    functions = ["count(*)", "avg(pm2_5)", "sum(pm10)", "count(DISTINCT sensor_id)"]
    wheres = [
        "", "WHERE pm2_5 > 10", "WHERE sensor_id = 1", "WHERE sensor_type <> 'SDS011'",
        "WHERE sensor_type = 'SDS011'",
    ]
    havings = ["", "HAVING count(*) = 744", "HAVING count(DISTINCT sensor_id) < 2"]
    sources = ["utrecht.public.air_quality", "rotterdam.public.air_quality"]
    cases = list(itertools.product(shapes, functions, wheres, havings, sources))
    answered = 0
    for shape, f, where, having, src in random.Random(7).sample(cases, 40):
        other = sources[1 - sources.index(src)]
        sql = shape.format(f=f, src=src, other=other, where=where, having=having)
        try:
            rows, _ = query_one(coordinator, t, sql)
        except adbc_driver_manager.Error as err:
            assert adbc_grpc_status(err) == "PermissionDenied", (sql, str(err))
            continue
        answered += 1
        groups = {row[0] for row in rows}
        # A filter may shrink a group below k: the released groups are those with at least k
        # sensors among the rows the filter keeps.
        assert groups <= large_under(where), (sql, groups - large_under(where))
        assert not groups & small, sql
    assert answered >= 10, "most generated queries are allowed aggregates"
