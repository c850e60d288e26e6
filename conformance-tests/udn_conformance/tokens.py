"""Keys, a JWKS and tokens for the access-control tests, made with PyJWT and cryptography (an
implementation independent of the node's), including the malformed and forged tokens that a
node must refuse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.conformance.test"
KID = "udn-test-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_int(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


@dataclass
class Signer:
    """An RSA key pair the test suite plays identity provider with."""

    key: rsa.RSAPrivateKey
    kid: str = KID
    issuer: str = ISSUER

    @classmethod
    def new(cls, kid: str = KID) -> Signer:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid)

    @classmethod
    def from_jwk(cls, path: Path, issuer: str) -> Signer:
        """The private RSA JWK a supplier configured the node under test to trust (its public
        half in the node's JWKS, under the same `kid`)."""
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("kty") != "RSA" or "d" not in document:
            raise ValueError(f"{path}: not a private RSA JWK (kty RSA with d)")
        key = jwt.algorithms.RSAAlgorithm.from_jwk(document)
        return cls(key, document.get("kid") or KID, issuer)

    def private_jwk(self) -> dict:
        """The private key as a JWK, for `udn-conformance run --signing-key`."""
        numbers = self.key.private_numbers()
        return {
            **self.jwk(),
            "d": _b64_int(numbers.d),
            "p": _b64_int(numbers.p),
            "q": _b64_int(numbers.q),
            "dp": _b64_int(numbers.dmp1),
            "dq": _b64_int(numbers.dmq1),
            "qi": _b64_int(numbers.iqmp),
        }

    def jwk(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": _b64_int(numbers.n),
            "e": _b64_int(numbers.e),
        }

    def write_jwks(self, path: Path) -> Path:
        path.write_text(json.dumps({"keys": [self.jwk()]}))
        return path

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def token(self, audience: str, headers: dict | None = None, **claims) -> str:
        """A valid RS256 token for `audience`; `claims` add to or (None) remove standard ones."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        for name, value in claims.items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return jwt.encode(
            payload, self.key, algorithm="RS256", headers={"kid": self.kid, **(headers or {})}
        )


def unsigned(header: dict, payload: dict, signature: bytes = b"") -> str:
    """A compact JWS with whatever header, payload and signature bytes are given."""
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(payload).encode())
    return f"{head}.{body}.{_b64(signature)}"


def hs256_with_public_key(signer: Signer, audience: str) -> str:
    """The algorithm-confusion attack: HS256 keyed with the RSA public key (PEM), which a
    verifier that takes the algorithm from the token would accept."""
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    payload = {"iss": signer.issuer, "sub": "mallory", "aud": audience, "nbf": now, "exp": now + 600}
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(payload).encode())
    mac = hmac.new(signer.public_pem(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def alg_none(audience: str, issuer: str = ISSUER, kid: str = KID) -> str:
    now = int(time.time())
    return unsigned(
        {"alg": "none", "typ": "JWT", "kid": kid},
        {"iss": issuer, "sub": "mallory", "aud": audience, "nbf": now, "exp": now + 600},
    )
