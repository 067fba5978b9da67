"""Verify a certification credential: a W3C Verifiable Credential as a JWT, signed by an issuer
the cluster trusts.

Why this module exists: a GpuPool's certifications are whatever its author typed. A credential
(the way Gaia-X issues its labels: a VC in the JWT encoding of the VC Data Model 1.1) lets the
certifying body sign the fact instead, and greenplace count only what checks out. This module is
the whole check, pure (the token, the trusted issuers, the subject, the certification's name and
``now`` in; a ``Verified`` or an ``Unverified`` out), so every failure kind is unit-tested
without a cluster; ``controller.credentials`` reads the tokens from Secrets and ConfigMaps.

The signature work is PyJWT's (``jwt``, over the ``cryptography`` package): no hand-written
cryptography. Only the algorithms of ``ALGORITHMS`` are accepted, and the algorithm is fixed by
the trusted key, not by the token (a token cannot pick ``none`` or switch an RSA key to HMAC):
``alg`` must be the one of a key the issuer is trusted with (``kid`` too, when both name one).

What a credential must say (``docs/credentials.md``)::

    header  {"alg": "EdDSA", "typ": "JWT", "kid": "key-2026"}          (kid optional)
    claims  {"iss": "<issuer id, as trusted>", "sub": "urn:greenplace:gpupool:<pool name>",
             "nbf": <unix time>, "exp": <unix time>, "jti": "<optional id>",
             "vc": {"@context": [...], "type": ["VerifiableCredential", ...],
                    "credentialSubject": {"id": "<same as sub>",
                                          "certification": {"name": "SecNumCloud",
                                                            "level": "3.2"}}}}

Subject binding: the subject is the pool's name as a URN (``pool_subject``). GpuPool names are
unique in a cluster and cannot be renamed, so a credential copied to another pool (its Secret
referenced by another GpuPool) names the wrong subject and fails. The same name in another
cluster is the same subject: trust is per cluster (the chart's ``trustedIssuers``), and an
issuer that certifies pools of several clusters should sign distinct names.

Times: ``exp`` is required; a credential past its ``exp`` (or before its ``nbf``) does not count.
A verified credential's ``exp`` and ``nbf`` become the certification's validity, so the planner's
run-window rule (``CertificationExpiresDuringRun``) uses the signed dates.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from greenplace import errors

__all__ = [
    "ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "Issuer",
    "Problem",
    "TrustError",
    "TrustedKey",
    "Unverified",
    "Verified",
    "load_trust",
    "pool_subject",
    "verify",
]

# The signature algorithms accepted (JOSE names). HMAC is not: a shared secret is no issuer key.
ALGORITHMS = ("EdDSA", "ES256", "ES384", "PS256", "RS256")
# RSA keys shorter than this are refused when trust is loaded (NIST SP 800-131A).
MIN_RSA_BITS = 2048
# A credential is a few hundred bytes; a bound keeps a hostile Secret from costing memory.
MAX_TOKEN_BYTES = 16_384
SUBJECT_PREFIX = "urn:greenplace:gpupool:"


class Problem(enum.StrEnum):
    """Why a credential does not count (in the certification's message and the pool status)."""

    MISSING = "missing"  # the Secret, ConfigMap or key is absent (controller.credentials)
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"  # alg none, or no signature
    ALGORITHM_NOT_ALLOWED = "algorithm not allowed"
    UNTRUSTED_ISSUER = "untrusted issuer"
    FORGED = "bad signature"
    WRONG_SUBJECT = "other subject"
    NAME_MISMATCH = "other certification"
    LEVEL_MISMATCH = "other level"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    NOT_CHECKED = "not checked"  # converted where no credential is read (simulator, files)


_FIX = {
    Problem.MISSING: "create it in the operator's namespace, or correct the reference",
    Problem.MALFORMED: "store the compact JWT (header.payload.signature) exactly as issued",
    Problem.UNSIGNED: "obtain a credential signed by the issuer",
    Problem.ALGORITHM_NOT_ALLOWED: f"the issuer must sign with one of {', '.join(ALGORITHMS)}",
    Problem.UNTRUSTED_ISSUER: "trust the issuer and its key in the chart value "
    "certificationCredentials.trustedIssuers, or obtain a credential from a trusted issuer",
    Problem.FORGED: "the token was altered or signed by another key: obtain it again from the "
    "issuer",
    Problem.WRONG_SUBJECT: "obtain a credential issued for this pool",
    Problem.NAME_MISMATCH: "reference the credential of this certification",
    Problem.LEVEL_MISMATCH: "declare the level the credential certifies (or obtain one for "
    "the declared level)",
    Problem.EXPIRED: "renew the credential with the issuer",
    Problem.NOT_YET_VALID: "wait until it is valid, or correct the reference",
    Problem.NOT_CHECKED: "credentials are verified by the operator; see the GpuPool's status",
}


@dataclasses.dataclass(frozen=True)
class TrustedKey:
    """One public key of an issuer; ``algorithm`` follows from the key's type."""

    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    algorithms: tuple[str, ...]
    kid: str | None = None


@dataclasses.dataclass(frozen=True)
class Issuer:
    """An issuer the cluster trusts: its id (the credentials' ``iss``) and its keys (several
    during a rotation)."""

    id: str
    keys: tuple[TrustedKey, ...]


@dataclasses.dataclass(frozen=True)
class Verified:
    """The credential checked out: the certification it signs, and when it is valid."""

    issuer: str
    level: str
    valid_until: datetime.datetime
    valid_from: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Unverified:
    """The credential does not count, with what went wrong and the fix."""

    problem: Problem
    detail: str

    @property
    def message(self) -> str:
        return f"credential {self.problem.value} ({self.detail}); fix: {_FIX[self.problem]}"


class TrustError(errors.GreenplaceError, ValueError):
    """The trusted issuers' document is invalid: the message names the entry and the fix."""


def pool_subject(pool: str) -> str:
    """The credential subject that identifies GpuPool ``pool`` (see the module docstring)."""
    return SUBJECT_PREFIX + pool


def load_trust(document: object) -> dict[str, Issuer]:
    """Issuer id -> trusted issuer, from the parsed ``--trusted-issuers`` file: a list of
    ``{id, publicKeys: [{pem | jwk, kid?}]}`` (the chart value, as the chart writes it)."""
    if document is None:
        return {}
    if not isinstance(document, list):
        raise TrustError("trusted issuers: expected a list of {id, publicKeys}")
    issuers: dict[str, Issuer] = {}
    for i, entry in enumerate(document):
        where = f"trustedIssuers[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise TrustError(f"{where}: expected {{id: <issuer id>, publicKeys: [...]}}")
        keys = entry.get("publicKeys")
        if not isinstance(keys, list) or not keys:
            raise TrustError(f"{where}.publicKeys: list at least one key (pem or jwk)")
        loaded = tuple(_key(k, f"{where}.publicKeys[{j}]") for j, k in enumerate(keys))
        previous = issuers.get(entry["id"])
        issuers[entry["id"]] = Issuer(entry["id"], (previous.keys if previous else ()) + loaded)
    return issuers


def _key(entry: object, where: str) -> TrustedKey:
    if not isinstance(entry, dict) or ("pem" in entry) == ("jwk" in entry):
        raise TrustError(f"{where}: set exactly one of pem (a PEM public key) or jwk")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TrustError(f"{where}.kid: expected a string")
    try:
        if "pem" in entry:
            key: Any = serialization.load_pem_public_key(str(entry["pem"]).encode())
        else:
            key = jwt.PyJWK(entry["jwk"]).key
            kid = kid or entry["jwk"].get("kid")
    except (ValueError, TypeError, AttributeError, jwt.PyJWTError) as error:
        raise TrustError(f"{where}: not a public key ({error})") from error
    if isinstance(key, ed25519.Ed25519PublicKey):
        return TrustedKey(key, ("EdDSA",), kid)
    if isinstance(key, ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384"}
        if key.curve.name not in by_curve:
            raise TrustError(f"{where}: curve {key.curve.name} not allowed (P-256 or P-384)")
        return TrustedKey(key, (by_curve[key.curve.name],), kid)
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise TrustError(f"{where}: RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}")
        return TrustedKey(key, ("PS256", "RS256"), kid)
    raise TrustError(f"{where}: key type not allowed (Ed25519, P-256, P-384 or RSA)")


def verify(
    token: str,
    issuers: Mapping[str, Issuer],
    *,
    subject: str,
    certification: str,
    level: str = "",
    now: datetime.datetime,
) -> Verified | Unverified:
    """Check ``token`` (a compact JWT) for ``certification`` at ``level`` (the declared one;
    the credential must certify the same, "" when it names none) of ``subject`` at ``now``."""
    token = token.strip()
    if len(token.encode()) > MAX_TOKEN_BYTES:
        return Unverified(Problem.MALFORMED, f"longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 3:
        return Unverified(Problem.MALFORMED, "not a compact JWT of three dot-separated parts")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        return Unverified(Problem.MALFORMED, str(error))
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or not parts[2]:
        return Unverified(Problem.UNSIGNED, f"alg {alg!r}")
    if alg not in ALGORITHMS:
        return Unverified(Problem.ALGORITHM_NOT_ALLOWED, f"alg {alg}")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        return Unverified(Problem.MALFORMED, "no iss claim")
    issuer = issuers.get(iss)
    if issuer is None:
        return Unverified(Problem.UNTRUSTED_ISSUER, f"issuer {_short(iss)} is not trusted")
    kid = header.get("kid")
    keys = [
        k for k in issuer.keys if alg in k.algorithms and (k.kid is None or kid in (None, k.kid))
    ]
    if not keys:
        return Unverified(
            Problem.UNTRUSTED_ISSUER,
            f"no key of issuer {_short(iss)} is trusted for alg {alg}"
            + (f" and kid {_short(str(kid))}" if kid is not None else ""),
        )
    for trusted in keys:
        try:
            jwt.decode(
                token,
                trusted.key,
                algorithms=[alg],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as error:
            return Unverified(Problem.MALFORMED, str(error))
    else:
        return Unverified(Problem.FORGED, f"signature does not match issuer {_short(iss)}")
    return _claims(claims, iss, subject=subject, certification=certification, level=level, now=now)


def _claims(
    claims: Mapping[str, Any],
    iss: str,
    *,
    subject: str,
    certification: str,
    level: str,
    now: datetime.datetime,
) -> Verified | Unverified:
    """The signed claims, checked (the signature is known good)."""
    vc = claims.get("vc")
    if not isinstance(vc, dict) or "VerifiableCredential" not in _strings(vc.get("type")):
        return Unverified(Problem.MALFORMED, "no vc claim of type VerifiableCredential")
    about = vc.get("credentialSubject")
    if not isinstance(about, dict):
        return Unverified(Problem.MALFORMED, "no vc.credentialSubject")
    sub = claims.get("sub")
    if sub != subject or about.get("id", sub) != sub:
        return Unverified(
            Problem.WRONG_SUBJECT, f"issued for {_short(str(sub))}, this pool is {subject}"
        )
    held = about.get("certification")
    if not isinstance(held, dict) or not isinstance(held.get("name"), str):
        return Unverified(Problem.MALFORMED, "no vc.credentialSubject.certification.name")
    if held["name"] != certification:
        return Unverified(
            Problem.NAME_MISMATCH, f"certifies {_short(held['name'])}, not {certification}"
        )
    signed = held.get("level", "")
    if not isinstance(signed, str):
        return Unverified(Problem.MALFORMED, "vc.credentialSubject.certification.level: a string")
    if signed != level:
        return Unverified(
            Problem.LEVEL_MISMATCH,
            f"certifies level {_short(signed)}, the GpuPool declares {_short(level)}",
        )
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or not _is_time(exp) or not _is_time(nbf, optional=True):
        return Unverified(Problem.MALFORMED, "exp (required) and nbf must be NumericDates")
    until = datetime.datetime.fromtimestamp(exp, datetime.UTC)
    since = None if nbf is None else datetime.datetime.fromtimestamp(nbf, datetime.UTC)
    if until <= now:
        return Unverified(Problem.EXPIRED, f"expired {until:%Y-%m-%dT%H:%M:%SZ}")
    if since is not None and now < since:
        return Unverified(Problem.NOT_YET_VALID, f"valid from {since:%Y-%m-%dT%H:%M:%SZ}")
    return Verified(iss, signed, until, since)


def _strings(value: object) -> Sequence[str]:
    if isinstance(value, str):
        return (value,)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else ()


def _is_time(value: object, *, optional: bool = False) -> bool:
    # bool is an int; NumericDates beyond year 9999 do not fit a datetime.
    return (optional and value is None) or (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0 <= value < 253_402_300_800
    )


def _short(text: str) -> str:
    """A claim quoted in a message: bounded, as JSON (a hostile token cannot forge a line)."""
    return json.dumps(text[:128])
