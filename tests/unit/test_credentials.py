"""The certification credential verifier: a valid VC-JWT verifies with its signed level and
dates; every failure kind (expired, not yet valid, forged, other subject, untrusted issuer or
key, unsigned, an algorithm not allowed, malformed, another certification) is refused with its
problem. Real keys generated here (``cryptography``), real tokens (PyJWT)."""

from __future__ import annotations

import datetime
import pathlib
import re

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from greenplace.audit import credentials as vc
from tests.credentials import NOW, Certifier, forged, unsigned

ISSUER = Certifier.ed25519(kid="key-2026")
EC_ISSUER = Certifier.p256()
TRUST = vc.load_trust([ISSUER.trust(), EC_ISSUER.trust()])
POOL = "ovh-gra-h100"
DAY = datetime.timedelta(days=1)


def check(
    token: str, pool: str = POOL, name: str = "SecNumCloud", level: str = "3.2"
) -> vc.Verified | vc.Unverified:
    return vc.verify(
        token, TRUST, subject=vc.pool_subject(pool), certification=name, level=level, now=NOW
    )


def problem(token: str, **kwargs: str) -> vc.Problem:
    result = check(token, **kwargs)
    assert isinstance(result, vc.Unverified), result
    return result.problem


@pytest.mark.parametrize("issuer", [ISSUER, EC_ISSUER], ids=["EdDSA", "ES256"])
def test_a_valid_credential_verifies_with_its_signed_level_and_dates(issuer: Certifier) -> None:
    until = NOW + 100 * DAY
    result = check(issuer.issue(POOL, level="3.2", valid_from=NOW - DAY, valid_until=until))
    assert result == vc.Verified(issuer.id, "3.2", until.replace(microsecond=0), NOW - DAY)


def test_an_expired_credential_is_refused() -> None:
    assert problem(ISSUER.issue(POOL, valid_until=NOW - DAY)) is vc.Problem.EXPIRED
    # exp is the last valid instant's end: a credential expiring now no longer counts
    assert problem(ISSUER.issue(POOL, valid_until=NOW)) is vc.Problem.EXPIRED


def test_a_credential_not_yet_valid_is_refused() -> None:
    assert problem(ISSUER.issue(POOL, valid_from=NOW + DAY)) is vc.Problem.NOT_YET_VALID


def test_a_forged_credential_is_refused() -> None:
    token = ISSUER.issue(POOL, level="1.0")
    assert problem(forged(token, exp=int((NOW + 3650 * DAY).timestamp()))) is vc.Problem.FORGED
    # signed by a key the issuer is not trusted with, under the issuer's name and kid
    impostor = Certifier.ed25519(ISSUER.id, kid=ISSUER.kid)
    assert problem(impostor.issue(POOL)) is vc.Problem.FORGED


def test_a_credential_for_another_pool_is_refused() -> None:
    result = check(ISSUER.issue("other-pool"))
    assert isinstance(result, vc.Unverified) and result.problem is vc.Problem.WRONG_SUBJECT
    assert "urn:greenplace:gpupool:other-pool" in result.message
    # sub and credentialSubject.id must agree
    claims = ISSUER.claims(POOL)
    claims["vc"]["credentialSubject"]["id"] = vc.pool_subject("other-pool")
    assert problem(ISSUER.sign(claims)) is vc.Problem.WRONG_SUBJECT


def test_an_untrusted_issuer_or_key_is_refused() -> None:
    assert problem(Certifier.ed25519("did:web:nobody.example").issue(POOL)) is (
        vc.Problem.UNTRUSTED_ISSUER
    )
    # a kid the issuer is not trusted with
    assert problem(Certifier.ed25519(ISSUER.id, kid="key-2019").issue(POOL)) is (
        vc.Problem.UNTRUSTED_ISSUER
    )


def test_an_algorithm_the_issuers_key_does_not_have_is_refused() -> None:
    """The key fixes the algorithm: an EdDSA issuer's name on an ES256 token matches no key."""
    claims = EC_ISSUER.claims(POOL) | {"iss": ISSUER.id}
    assert problem(EC_ISSUER.sign(claims)) is vc.Problem.UNTRUSTED_ISSUER


def test_unsigned_and_hmac_credentials_are_refused() -> None:
    assert problem(unsigned(ISSUER.claims(POOL))) is vc.Problem.UNSIGNED
    hmac = jwt.encode(ISSUER.claims(POOL), "a-shared-secret-of-32-bytes-long!", algorithm="HS256")
    assert problem(hmac) is vc.Problem.ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize(
    "token",
    ["", "not a jwt", "a.b.c", "a" * (vc.MAX_TOKEN_BYTES + 1)],
    ids=["empty", "text", "garbage", "huge"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert problem(token) is vc.Problem.MALFORMED


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.pop("vc"),
        lambda c: c["vc"].update(type=["SomethingElse"]),
        lambda c: c["vc"].pop("credentialSubject"),
        lambda c: c["vc"]["credentialSubject"].pop("certification"),
        lambda c: c.pop("exp"),
        lambda c: c.update(exp="tomorrow"),
        lambda c: c.pop("iss"),
    ],
    ids=["no vc", "not a VC", "no subject", "no certification", "no exp", "exp text", "no iss"],
)
def test_a_signed_credential_missing_a_claim_is_malformed(change: object) -> None:
    claims = ISSUER.claims(POOL)
    change(claims)  # type: ignore[operator]
    assert problem(ISSUER.sign(claims)) is vc.Problem.MALFORMED


def test_a_credential_of_another_certification_is_refused() -> None:
    assert problem(ISSUER.issue(POOL, "HDS"), name="SecNumCloud") is vc.Problem.NAME_MISMATCH


def test_a_credential_of_another_level_than_declared_is_refused() -> None:
    """The declared level must be the signed one: a 3.1 credential cannot back a 3.2 claim."""
    token = ISSUER.issue(POOL, level="3.1")
    assert problem(token, level="3.2") is vc.Problem.LEVEL_MISMATCH
    assert problem(ISSUER.issue(POOL, level="3.2"), level="") is vc.Problem.LEVEL_MISMATCH
    assert isinstance(check(token, level="3.1"), vc.Verified)


def test_a_refusal_message_names_the_problem_and_the_fix() -> None:
    result = check(Certifier.ed25519("did:web:nobody.example").issue(POOL))
    assert isinstance(result, vc.Unverified)
    assert result.message.startswith('credential untrusted issuer (issuer "did:web:nobody.example"')
    assert "certificationCredentials.trustedIssuers" in result.message


def test_rotation_trusts_every_key_listed_for_an_issuer() -> None:
    old, new = (
        Certifier.ed25519("did:web:rotating", "k1"),
        Certifier.ed25519("did:web:rotating", "k2"),
    )
    trust = vc.load_trust([old.trust(), new.trust()])
    for issuer in (old, new):
        token = issuer.issue(POOL)
        assert isinstance(
            vc.verify(
                token,
                trust,
                subject=vc.pool_subject(POOL),
                certification="SecNumCloud",
                level="3.2",
                now=NOW,
            ),
            vc.Verified,
        )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"id": "x"}, "expected a list"),
        ([{"publicKeys": []}], r"trustedIssuers\[0\]: expected"),
        ([{"id": "x", "publicKeys": []}], r"publicKeys: list at least one key"),
        ([{"id": "x", "publicKeys": [{"pem": "junk"}]}], "not a public key"),
        ([{"id": "x", "publicKeys": [{}]}], "exactly one of pem"),
    ],
)
def test_a_bad_trust_document_names_the_entry(document: object, expected: str) -> None:
    with pytest.raises(vc.TrustError, match=expected):
        vc.load_trust(document)


def test_weak_keys_are_not_trusted() -> None:
    def pem(key: object) -> str:
        return (
            key.public_key()
            .public_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(vc.TrustError, match="at least 2048"):
        vc.load_trust([{"id": "x", "publicKeys": [{"pem": pem(small_rsa)}]}])
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(vc.TrustError, match="curve secp256k1 not allowed"):
        vc.load_trust([{"id": "x", "publicKeys": [{"pem": pem(k1)}]}])


def test_a_jwk_key_is_trusted_like_a_pem_one() -> None:
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(ISSUER.private.public_key(), as_dict=True)
    trust = vc.load_trust([{"id": ISSUER.id, "publicKeys": [{"jwk": jwk, "kid": "key-2026"}]}])
    result = vc.verify(
        ISSUER.issue(POOL),
        trust,
        subject=vc.pool_subject(POOL),
        certification="SecNumCloud",
        level="3.2",
        now=NOW,
    )
    assert isinstance(result, vc.Verified)


def test_the_docs_issuing_example_makes_a_credential_that_verifies(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """docs/credentials.md's Python block, run as written with a fresh key, signs a credential
    the operator's verifier accepts against the key's public half."""
    text = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "credentials.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    key = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "issuer.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/credentials.md", "exec"), {})  # the docs' own example
    token = capsys.readouterr().out.strip()
    trust = vc.load_trust(
        [
            {
                "id": "did:web:certifier.example",
                "publicKeys": [{"pem": public.decode(), "kid": "2026-1"}],
            }
        ]
    )
    at = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)
    result = vc.verify(
        token,
        trust,
        subject=vc.pool_subject("ovh-gra-h100"),
        certification="SecNumCloud",
        level="3.2",
        now=at,
    )
    assert isinstance(result, vc.Verified), result
