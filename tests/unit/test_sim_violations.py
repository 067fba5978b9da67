"""The simulator counts a sovereignty violation for every hard rule the planner enforces.

One pool, one policy, one job per case; ``unguarded`` (first-fit ignoring every policy) runs the
job in the pool, ``first-fit`` (which respects policies) does not. Each case breaks one rule the
count once missed (it checked allowed countries only): regimes, extraterritorial exposure,
jurisdiction unknown, certification missing, too low, expired, expiring during the run, and the
workload's data-residency label. Each case has a compliant twin that counts nothing, so a count
that always says 1 fails too.
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from greenplace.domain import model
from greenplace.sim import metrics, replay, signal, strategies
from greenplace.sim import scenario as sc
from tests import builders

T0 = builders.T0
H = datetime.timedelta(hours=1)
R = model.Reason
SNC = "SecNumCloud"


@dataclasses.dataclass(frozen=True)
class Case:
    """A pool and policy breaking one rule (``bad``), and the same made compliant (``good``)."""

    reason: R
    bad: tuple[model.Pool, model.Policy, dict[str, str]]
    good: tuple[model.Pool, model.Policy, dict[str, str]]


def case(
    reason: R,
    bad_pool: model.Pool,
    good_pool: model.Pool,
    policy: model.Policy,
    labels: dict[str, str] | None = None,
) -> Case:
    return Case(reason, (bad_pool, policy, labels or {}), (good_pool, policy, labels or {}))


def pool(**options: object) -> model.Pool:
    return builders.pool("p", free=4, **options)  # type: ignore[arg-type]


RESIDENCY = {model.DATA_RESIDENCY_LABEL: "FR"}
CASES = {
    "regime": case(
        R.REGIME_NOT_ALLOWED,
        pool(country="FR", jurisdiction=model.Jurisdiction("GB")),  # a GB provider in France
        pool(country="FR"),
        builders.policy(namespace="ml", regimes={"EU"}),
    ),
    "extraterritorial": case(
        R.EXTRATERRITORIAL_EXPOSURE,
        pool(jurisdiction=builders.CLOUD_ACT),
        pool(),
        builders.policy(namespace="ml", no_foreign_law=True),
    ),
    "jurisdiction unknown": case(
        R.JURISDICTION_UNKNOWN,
        pool(jurisdiction=None),
        pool(),
        builders.policy(namespace="ml", no_foreign_law=True),
    ),
    "certification missing": case(
        R.CERTIFICATION_MISSING,
        pool(certs=[builders.cert("HDS")]),
        pool(certs=[builders.cert(SNC)]),
        builders.policy(namespace="ml", certs={SNC: ""}),
    ),
    "certification level": case(
        R.CERTIFICATION_LEVEL_TOO_LOW,
        pool(certs=[builders.cert(SNC, level="3.1")]),
        pool(certs=[builders.cert(SNC, level="3.2")]),
        builders.policy(namespace="ml", certs={SNC: "3.2"}),
    ),
    "certification expired": case(
        R.CERTIFICATION_NOT_VALID,
        pool(certs=[builders.cert(SNC, until_days=-1)]),
        pool(certs=[builders.cert(SNC)]),
        builders.policy(namespace="ml", certs={SNC: ""}),
    ),
    # The job runs 4 h from T0: a certificate ending after 1 h lapses during the run.
    "certification expires during the run": case(
        R.CERTIFICATION_EXPIRES_DURING_RUN,
        pool(certs=[builders.cert(SNC, until_days=1 / 24)]),
        pool(certs=[builders.cert(SNC, until_days=5 / 24)]),
        builders.policy(namespace="ml", certs={SNC: ""}),
    ),
    "data residency label": case(
        R.RESIDENCY_NOT_MET,
        pool(country="DE"),
        pool(country="FR"),
        builders.policy(namespace="ml"),  # no rule at all: the pod's own label is the rule
        RESIDENCY,
    ),
}


def scenario(pool: model.Pool, policy: model.Policy, labels: dict[str, str]) -> sc.Scenario:
    job = sc.Job("ml", "train", T0, gpus=1, annotations=sc.time_annotations(4 * H), labels=labels)
    return sc.Scenario(
        pools=(sc.SimPool(pool),),
        policies=(policy,),
        jobs=(job,),
        carbon={pool.location.grid_zone: signal.constant(100.0)},
        start=T0,
        end=T0 + 8 * H,
    )


def outcome(strategy: str, inputs: sc.Scenario) -> metrics.Outcome:
    schedule = replay.replay(inputs, strategies.by_name(strategy))
    return metrics.evaluate(inputs, schedule, respects_policies=strategy != "unguarded")


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_hard_rule_of_the_planner_is_a_violation(name: str) -> None:
    rule = CASES[name]
    breaking = outcome("unguarded", scenario(*rule.bad))
    assert breaking.total.sovereignty_violations == 1
    rule_name = sc.RESIDENCY_RULE if rule.bad[2] else "ml/pol"
    assert [(v.job, v.pool, v.policies, v.reasons) for v in breaking.violations] == [
        ("ml/train", "p", (rule_name,), (str(rule.reason),))
    ]
    # A strategy that respects policies does not run it there (the same rules, not fewer).
    guarded = outcome("first-fit", scenario(*rule.bad))
    assert guarded.total.sovereignty_violations == 0 and guarded.total.never_started == 1
    # The compliant twin runs and counts nothing: the count is not always 1.
    compliant = outcome("unguarded", scenario(*rule.good))
    assert compliant.total.jobs_run == 1 and compliant.total.sovereignty_violations == 0
    assert outcome("first-fit", scenario(*rule.good)).total.jobs_run == 1


def test_every_rule_broken_is_listed_with_its_policy() -> None:
    """Two policies, each broken by a different rule, and the label: three breaches, in order."""
    regimes = builders.policy("regimes", namespace="ml", regimes={"EU"})
    certified = builders.policy("certified", namespace="ml", certs={SNC: ""})
    us_pool = pool(country="DE", jurisdiction=builders.CLOUD_ACT)
    job = sc.Job("ml", "train", T0, 1, sc.time_annotations(H), labels=RESIDENCY).workload()
    assert sc.breaches((regimes, certified), us_pool, job, T0) == (
        sc.Breach("ml/regimes", R.REGIME_NOT_ALLOWED),
        sc.Breach("ml/certified", R.CERTIFICATION_MISSING),
        sc.Breach(sc.RESIDENCY_RULE, R.RESIDENCY_NOT_MET),
    )
