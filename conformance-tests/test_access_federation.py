"""Access control through a coordinator (UDN-AUTH-6): the caller's token is forwarded, so each
peer lists and decides by its own policy.
"""

from __future__ import annotations

import pytest

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    adbc,
    auth_args,
    BOTH,
    COORDINATOR_POLICY,
    idp,
    query_one,
    refused,
    strict_node,
    token,
)
from udn_conformance.errors import adbc_grpc_status


@pytest.fixture(scope="module")
def coordinator(launcher, idp, strict_node):
    """amsterdam, with authentication of its own, federating the strict utrecht node."""
    args = auth_args(idp, COORDINATOR_POLICY, "coordinator", audience="amsterdam")
    return launcher.spawn([*args, "--peer", f"utrecht={strict_node.flight_url}"], name="amsterdam")


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
