"""Access control at startup (UDN-AUTH-5): a bad policy, a bad JWKS or incomplete
authentication flags stop the node, naming the problem.
"""

from __future__ import annotations

import pytest

from udn_conformance.access import (  # noqa: F401 - fixtures are used by name
    AUDIENCE,
    auth_args,
    idp,
    STRICT_POLICY,
)
from udn_conformance import tokens
from udn_conformance.node import NodeStartError

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
