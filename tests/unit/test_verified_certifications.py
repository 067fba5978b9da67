"""Verified certifications in the planner, the conversion, the admission policy's allowed pools
and the ledger: a certification whose credential failed never counts (CertificationUnverified,
the message names the problem and the fix); one declared without a credential counts unless
the policy requires verified certifications; a verified credential's exp bounds the run window.
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from greenplace.api import convert, models
from greenplace.audit import credentials as vc
from greenplace.audit import entries
from greenplace.controller import status
from greenplace.domain import model
from greenplace.engine import planner, snapshot_file
from tests import builders as b

R = model.Reason
HOUR = datetime.timedelta(hours=1)
YEAR_END = datetime.datetime(2026, 12, 31, tzinfo=datetime.UTC)
DECLARED = model.Certification("SecNumCloud", YEAR_END, "3.2")
VERIFIED = dataclasses.replace(DECLARED, verified=True)
FORGED = dataclasses.replace(DECLARED, unverified="credential bad signature (...); fix: ...")


def requiring(*, verified: bool) -> model.Policy:
    policy = b.policy(certs={"SecNumCloud": "3.2"})
    (requirement,) = policy.required_certifications
    return dataclasses.replace(
        policy, required_certifications=(dataclasses.replace(requirement, verified=verified),)
    )


def decide(cert: model.Certification, *, verified: bool, hours: float = 1) -> model.Decision:
    snapshot = b.snapshot(
        [b.pool("p", certs=[cert])], [requiring(verified=verified)], [b.workload("w", hours=hours)]
    )
    (decision,) = planner.plan(snapshot, b.T0).decisions
    return decision


def rejected(decision: model.Decision) -> model.Rejection:
    (rejection,) = decision.alternatives
    return rejection


@pytest.mark.parametrize(
    ("cert", "verified", "placed"),
    [
        (DECLARED, False, True),
        (DECLARED, True, False),
        (VERIFIED, False, True),
        (VERIFIED, True, True),
        (FORGED, False, False),
        (FORGED, True, False),
    ],
    ids=[
        "declared-counts",
        "declared-not-when-verified-required",
        "verified-counts",
        "verified-counts-when-required",
        "failed-credential-never-counts",
        "failed-credential-not-when-required",
    ],
)
def test_which_certifications_count(
    cert: model.Certification, verified: bool, placed: bool
) -> None:
    decision = decide(cert, verified=verified)
    assert (decision.outcome is model.Outcome.PLACED) is placed, decision.message
    if not placed:
        assert rejected(decision).reason is R.CERTIFICATION_UNVERIFIED


def test_the_rejection_says_which_credential_problem_and_the_fix() -> None:
    failed = rejected(decide(FORGED, verified=False)).message
    assert "certification SecNumCloud unverified: credential bad signature" in failed
    assert "spec.certifications[].credential" in failed
    declared = rejected(decide(DECLARED, verified=True)).message
    assert "declared without a credential, and the policy requires a verified one" in declared


def test_a_verified_certification_still_needs_its_level_and_dates() -> None:
    low = dataclasses.replace(VERIFIED, level="3.1")
    assert rejected(decide(low, verified=True)).reason is R.CERTIFICATION_LEVEL_TOO_LOW
    short = dataclasses.replace(VERIFIED, valid_until=b.T0 + 2 * HOUR)
    assert decide(short, verified=True, hours=1).outcome is model.Outcome.PLACED
    decision = decide(short, verified=True, hours=5)
    assert rejected(decision).reason is R.CERTIFICATION_EXPIRES_DURING_RUN


def test_another_valid_certification_of_the_same_name_still_counts() -> None:
    snapshot = b.snapshot(
        [b.pool("p", certs=[FORGED, VERIFIED])], [requiring(verified=True)], [b.workload("w")]
    )
    (decision,) = planner.plan(snapshot, b.T0).decisions
    assert decision.outcome is model.Outcome.PLACED


def test_the_admission_policys_allowed_pools_use_the_same_rule() -> None:
    """status.pool_rejection decides the ValidatingAdmissionPolicy's allowedPools."""
    policy = requiring(verified=True)
    assert status.pool_rejection(policy, b.pool("p", certs=[VERIFIED]), b.T0) is None
    for cert in (DECLARED, FORGED):
        rejection = status.pool_rejection(policy, b.pool("p", certs=[cert]), b.T0)
        assert rejection is not None and rejection.reason is R.CERTIFICATION_UNVERIFIED


SPEC = models.Certification.model_validate(
    {
        "name": "SecNumCloud",
        "level": "3.2",
        "expires": "2027-06-30",
        "credential": {"configMapKeyRef": {"name": "vc", "key": "token"}},
    }
)


def test_conversion_takes_the_credentials_dates_within_the_declared_expiry() -> None:
    nbf = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    soon = datetime.datetime(2026, 9, 1, tzinfo=datetime.UTC)
    cert = convert.certification_to_domain(SPEC, vc.Verified("did:web:x", "3.2", soon, nbf))
    assert (cert.verified, cert.unverified, cert.valid_from, cert.valid_until) == (
        True, None, nbf, soon,
    )  # fmt: skip
    late = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    cert = convert.certification_to_domain(SPEC, vc.Verified("did:web:x", "3.2", late))
    assert cert.valid_until.date() == datetime.date(2027, 6, 30)  # the declared expiry is kept


def test_conversion_of_a_failed_or_unread_credential_does_not_count() -> None:
    failed = vc.Unverified(vc.Problem.EXPIRED, "expired 2026-01-01T00:00:00Z")
    cert = convert.certification_to_domain(SPEC, failed)
    assert not cert.verified and cert.unverified == failed.message
    unread = convert.certification_to_domain(SPEC, None)
    assert unread.unverified is not None and "not checked" in unread.unverified
    plain = models.Certification.model_validate({"name": "HDS", "expires": "2027-01-01"})
    assert convert.certification_to_domain(plain, None).unverified is None


@pytest.mark.parametrize(
    "credential",
    [{}, {"secretKeyRef": {"name": "a", "key": "k"}, "configMapKeyRef": {"name": "a", "key": "k"}}],
    ids=["neither", "both"],
)
def test_a_credential_names_exactly_one_object(credential: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="set exactly one of secretKeyRef or configMapKeyRef"):
        models.CredentialRef.model_validate(credential)


def test_the_ledger_records_whether_each_certification_was_verified() -> None:
    pool = b.pool("p", certs=[VERIFIED, FORGED])
    facts = entries.pool_facts(pool, b.T0, 1)["certifications"]
    assert [c["verified"] for c in facts] == [True, False]


def test_a_snapshot_file_keeps_each_certifications_verification() -> None:
    """``explain --from-cluster --save`` then ``explain FILE`` decides as the cluster did."""
    snapshot = b.snapshot(
        [b.pool("p", certs=[VERIFIED, FORGED]), b.pool("q", certs=[DECLARED])],
        [requiring(verified=True)],
        [b.workload("w")],
    )
    loaded, _ = snapshot_file.loads(snapshot_file.dumps(snapshot, b.T0))
    assert loaded.pools == snapshot.pools
    assert loaded.policies[0].required_certifications[0].verified is True
    assert planner.plan(loaded, b.T0) == planner.plan(snapshot, b.T0)
