"""Issue W3C Verifiable Credentials as JWTs for the tests, with keys generated here.

Why this module exists: the verifier's unit tests and the integration test need real signed
credentials (valid, expired, forged, for another subject, from an untrusted issuer) from real
keys; one issuer helper keeps the claim shape in one place (the one docs/credentials.md shows).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from greenplace.audit import credentials

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


@dataclasses.dataclass
class Certifier:
    """An issuer with a fresh key: ``trust`` is its entry in the trusted issuers' document."""

    id: str
    private: Any
    alg: str
    kid: str | None = None

    @classmethod
    def ed25519(cls, id: str = "did:web:certifier.example", kid: str | None = None) -> Certifier:
        return cls(id, ed25519.Ed25519PrivateKey.generate(), "EdDSA", kid)

    @classmethod
    def p256(cls, id: str = "did:web:ec.example", kid: str | None = None) -> Certifier:
        return cls(id, ec.generate_private_key(ec.SECP256R1()), "ES256", kid)

    @property
    def pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def trust(self) -> dict[str, Any]:
        key: dict[str, Any] = {"pem": self.pem}
        if self.kid:
            key["kid"] = self.kid
        return {"id": self.id, "publicKeys": [key]}

    def claims(
        self,
        pool: str,
        certification: str = "SecNumCloud",
        level: str = "3.2",
        *,
        valid_from: datetime.datetime | None = None,
        valid_until: datetime.datetime | None = None,
    ) -> dict[str, Any]:
        valid_from = valid_from or NOW - datetime.timedelta(days=30)
        valid_until = valid_until or NOW + datetime.timedelta(days=365)
        subject = credentials.pool_subject(pool)
        return {
            "iss": self.id,
            "sub": subject,
            "nbf": int(valid_from.timestamp()),
            "exp": int(valid_until.timestamp()),
            "jti": f"urn:uuid:{pool}-{certification}",
            "vc": {
                "@context": ["https://www.w3.org/2018/credentials/v1"],
                "type": ["VerifiableCredential", "CertificationCredential"],
                "credentialSubject": {
                    "id": subject,
                    "certification": {"name": certification, "level": level},
                },
            },
        }

    def sign(self, claims: dict[str, Any], alg: str | None = None) -> str:
        headers = {"kid": self.kid} if self.kid else None
        return jwt.encode(claims, self.private, algorithm=alg or self.alg, headers=headers)

    def issue(self, pool: str, certification: str = "SecNumCloud", **kwargs: Any) -> str:
        return self.sign(self.claims(pool, certification, **kwargs))


def unsigned(claims: dict[str, Any]) -> str:
    """The same claims with ``alg: none`` and no signature."""
    return jwt.encode(claims, None, algorithm="none")


def forged(token: str, **changes: Any) -> str:
    """``token`` with claims changed and its original signature kept."""
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False}) | changes
    body = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{body}.{signature}"
