"""Access control, the policy's rules (UDN-AUTH-2, 3, 4, 10): public datasets and default deny,
ordered rules on claims, denied columns, purpose binding, and hidden datasets.

The open node declares `air_quality` public and grants `traffic_counts` by rules.
"""

from __future__ import annotations

from dataclasses import dataclass

import adbc_driver_manager
import pytest

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    DENIED_COLUMNS,
    DENIED_SUBJECT,
    HIDDEN,
    ORGANISATION,
    PROTECTED,
    PROTECTED_GROUP,
    PROTECTED_RULES,
    PERSONAL,
    PURPOSED,
    PURPOSES,
    adbc,
    auth_args,
    idp,
    query_one,
    refused,
    token,
)
from udn_conformance import datasets
from udn_conformance.errors import adbc_grpc_status


# The certification grants' rules for traffic_counts, bound to purposes here (UDN-AUTH-4).
OPEN_POLICY = f"""
[[dataset]]
name = "air_quality"
public = true

[[dataset]]
name = "traffic_counts"
purposes = {PURPOSES!r}
{PROTECTED_RULES}""".replace("'", '"')


@pytest.fixture(scope="module")
def open_node(launcher, idp):
    return launcher.spawn(auth_args(idp, OPEN_POLICY, "open"), name="utrecht")


@dataclass
class Grants:
    """A node under a policy, and what that policy makes public and protects."""

    node: object
    public: set[str]
    protected: list[str]  # tables no caller without a grant reads
    sample: str  # a public table to query


@pytest.fixture(scope="module")
def default_deny(remote, data_dir, idp, request):
    """OPEN_POLICY's node, or the node under certification with the certification grants
    (`traffic_counts` for the group `mobility`, every other fixture table public)."""
    if remote is None:
        node = request.getfixturevalue("open_node")
        return Grants(node, {"air_quality"}, ["traffic_counts", "neighbourhoods"], "air_quality")
    names = set(datasets.table_list(data_dir))
    if PROTECTED not in names:
        pytest.fail(f"the fixtures in {data_dir} lack {PROTECTED}: write them again", pytrace=False)
    public = names - {PROTECTED, HIDDEN, PERSONAL, PURPOSED}
    protected = [PROTECTED, *sorted({PERSONAL, PURPOSED} & names)]
    return Grants(remote, public, protected, "nation" if "nation" in public else sorted(public)[0])


@pytest.fixture(scope="module")
def rules_node(remote, request):
    """A node whose `traffic_counts` has OPEN_POLICY's rules: OPEN_POLICY's node, or the node
    under certification (the certification grants give it the same three rules)."""
    return remote if remote is not None else request.getfixturevalue("open_node")


@pytest.mark.requirement("UDN-AUTH-2")
def test_anonymous_callers_read_public_datasets_only(default_deny, idp):
    grants = default_deny
    with adbc(grants.node, None) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {grants.sample}")
        assert cur.fetchone()[0] > 0
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert {r[0] for r in cur.fetchall()} == grants.public
        cur.execute("SHOW TABLES")
        listed = {r[2] for r in cur.fetchall() if r[1] == "public"}
        assert listed == grants.public
        for table in grants.protected:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute(f"SELECT count(*) FROM {table}")
                cur.fetchall()
            assert adbc_grpc_status(err.value) == "Unauthenticated", str(err.value)


@pytest.mark.requirement("UDN-AUTH-2")
def test_datasets_without_a_grant_are_denied_and_unlisted(default_deny, idp):
    grants = default_deny
    stranger = token(idp, sub="eve", groups=["parks"], purpose="research")
    protected, other = grants.protected[0], grants.protected[-1]
    with adbc(grants.node, stranger) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert {r[0] for r in cur.fetchall()} == grants.public
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        names = {
            t["table_name"]
            for catalog in objects
            for schema in catalog["catalog_db_schemas"] or []
            for t in schema["db_schema_tables"] or []
        }
        assert not names & set(grants.protected), names & set(grants.protected)
        catalog = objects[0]["catalog_name"]
        for sql in [
            f"SELECT count(*) FROM {protected}",
            f"SELECT * FROM {catalog}.public.{other}",
            f"EXPLAIN SELECT * FROM {protected}",
            f"SELECT count(*) FROM {grants.sample} a CROSS JOIN {protected} t",
        ]:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute(sql)
                cur.fetchall()
            assert adbc_grpc_status(err.value) == "PermissionDenied", sql
            assert any(t in str(err.value) for t in grants.protected), str(err.value)


@pytest.mark.requirement("UDN-AUTH-3")
def test_first_matching_rule_decides(rules_node, idp):
    # mallory is in the group too, but the deny rule comes first.
    mallory = token(idp, sub=DENIED_SUBJECT, groups=[PROTECTED_GROUP], purpose="research")
    with adbc(rules_node, mallory) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as err:
            cur.execute("SELECT count(*) FROM traffic_counts")
            cur.fetchall()
        assert adbc_grpc_status(err.value) == "PermissionDenied"
        if rules_node.process is not None:  # Polder names the rule that decided
            assert "rule 1" in str(err.value)
    clerk = token(idp, sub="bob", org=ORGANISATION, purpose="research")
    with adbc(rules_node, clerk) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(DISTINCT segment_id) FROM traffic_counts")
        assert cur.fetchone()[0] > 0


@pytest.mark.requirement("UDN-AUTH-3")
def test_denied_columns_exist_nowhere(rules_node, idp):
    analyst = token(idp, sub="alice", groups=[PROTECTED_GROUP], purpose="research")
    denied = set(DENIED_COLUMNS)
    with adbc(rules_node, analyst) as conn:
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


@pytest.fixture(scope="module")
def purpose_bound(remote, data_dir, request):
    """A node, its table bound to PURPOSES and readable by the group `mobility`, and a public
    table: OPEN_POLICY's node, or the node under certification (`purposed_counts`)."""
    if remote is None:
        return request.getfixturevalue("open_node"), "traffic_counts", "air_quality"
    if PURPOSED not in datasets.table_list(data_dir):
        pytest.fail(f"the fixtures in {data_dir} lack {PURPOSED}: write them again", pytrace=False)
    return remote, PURPOSED, "nation"


@pytest.mark.requirement("UDN-AUTH-4")
def test_purpose_binding(purpose_bound, idp):
    node, bound, public = purpose_bound
    for purpose in [None, "marketing"]:
        t = token(idp, sub="alice", groups=["mobility"], purpose=purpose)
        with adbc(node, t) as conn, conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as err:
                cur.execute(f"SELECT count(*) FROM {bound}")
                cur.fetchall()
            assert adbc_grpc_status(err.value) == "PermissionDenied"
            assert "purposes" in str(err.value)
            assert all(p in str(err.value) for p in PURPOSES), str(err.value)
            # The public dataset needs no purpose.
            cur.execute(f"SELECT count(*) FROM {public}")
            assert cur.fetchone()[0] > 0
    t = token(idp, sub="alice", groups=["mobility"], purpose="mobility-planning")
    with adbc(node, t) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {bound}")
        assert cur.fetchone()[0] > 0


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
def test_hidden_datasets_are_left_out_of_public_metadata(launcher, idp, remote):
    import requests

    if remote is not None:  # the certification grants: hidden_counts, read by `mobility`
        node, hidden, public = remote, HIDDEN, "nation"
        if not node.http_url:
            pytest.skip("needs the node's HTTP address (--http)")
    else:
        node = launcher.spawn(auth_args(idp, HIDDEN_POLICY, "hidden"), name="utrecht")
        hidden, public = "traffic_counts", "air_quality"
    for path in ["/catalog", "/readyz"]:
        body = requests.get(f"{node.http_url}{path}", timeout=30).text
        assert hidden not in body, path
        assert public in body, path
    sparql = requests.get(
        f"{node.http_url}/sparql",
        params={"query": "SELECT ?s ?p ?o WHERE { ?s ?p ?o }"},
        headers={"Accept": "application/sparql-results+json"},
        timeout=30,
    )
    assert sparql.status_code == 200 and hidden not in sparql.text
    assert public in sparql.text
    # Hidden is about metadata only: the granted caller reads it as before.
    rows, _ = query_one(node, token(idp, groups=[PROTECTED_GROUP]), f"SELECT count(*) FROM {hidden}")
    assert rows[0][0] > 0
    # To anyone else, naming it gets exactly the answer a missing table gets: no existence
    # oracle, anonymous or authenticated.
    absent = hidden[:-1] + "z"
    for caller in [None, token(idp, groups=["research"])]:
        refusal = refused(node, caller, f"SELECT count(*) FROM {hidden}")
        missing = refused(node, caller, f"SELECT count(*) FROM {absent}")
        assert adbc_grpc_status(refusal) == adbc_grpc_status(missing) == "NotFound", str(refusal)
        assert str(refusal).replace(hidden, absent) == str(missing)
