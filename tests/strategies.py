"""Random fleets, policies, workloads, budgets and forecasts for the planner (hypothesis).

Why this module exists: the property tests, the explain tests and the planning-cases dump
(``bench/planner_cases.py``) draw from the same generators; one module holds them so no test
module imports another.
"""

from __future__ import annotations

from typing import TypeVar

from hypothesis import strategies as st

from greenplace.domain import model
from tests import builders as b

T = TypeVar("T")
COUNTRIES = ["FR", "DE", "NO", "US", ""]
JURISDICTIONS = [b.LOCAL, b.LOCAL, b.CLOUD_ACT, None, model.Jurisdiction("DE")]


def sometimes(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """None three times out of four: most random policies should still let work through."""
    return st.sampled_from([False, False, False, True]).flatmap(
        lambda on: strategy if on else st.none()
    )


@st.composite
def pools(draw: st.DrawFn, name: str) -> model.Pool:
    certs = draw(
        st.lists(
            st.builds(
                b.cert,
                st.sampled_from(["HDS", "EUCS"]),
                level=st.sampled_from(["", "basic", "high", "3.2"]),
                until_days=st.floats(-1, 5),
                from_days=sometimes(st.floats(-2, 1)),
            ),
            max_size=3,
        )
    )
    free = draw(st.integers(0, 16))
    return b.pool(
        name,
        country=draw(st.sampled_from(["FR", "FR", "DE", "DE", *COUNTRIES])),
        gco2=draw(st.one_of(st.none(), *[st.floats(10, 800)] * 3)),
        free=free,
        total=free + draw(st.integers(0, 8)),
        price=draw(st.floats(0.5, 5)),
        pue=draw(st.floats(1, 2)),
        jurisdiction=draw(st.sampled_from(JURISDICTIONS)),
        certs=certs,
        spot=draw(st.none() | st.floats(0.1, 2)),
        embodied=draw(st.floats(0, 100)),
        per_node=draw(st.none() | st.sampled_from([4, 8])),
    )


@st.composite
def policies(draw: st.DrawFn, name: str) -> model.Policy:
    return b.policy(
        name,
        countries=draw(sometimes(st.sets(st.sampled_from(COUNTRIES[:4]), min_size=1))),
        ceiling=draw(sometimes(st.floats(50, 900))),
        match=draw(st.sampled_from([{}, {}, {}, {"team": "a"}])),
        regimes=draw(sometimes(st.sampled_from([{"EU"}, {"EEA"}]))),
        no_foreign_law=draw(st.sampled_from([False, False, True])),
        certs=draw(st.sampled_from([{}, {}, {}, {"HDS": ""}, {"EUCS": "basic"}, {"EUCS": "high"}])),
        carbon_price=draw(st.sampled_from([0.0, 100.0, 5_000.0])),
        budget=draw(st.sampled_from([None, None, "team"])),
        yields=draw(st.sampled_from([True, True, False])),
        on_missing=draw(st.sampled_from(["Hold", "Hold", "CostOnly"])),
    )


@st.composite
def workloads(draw: st.DrawFn, name: str) -> model.Workload:
    pods = draw(st.lists(st.integers(1, 8), min_size=1, max_size=3))
    return b.workload(
        name,
        at=draw(st.integers(0, 5)),
        labels={"team": draw(st.sampled_from(["a", "b"]))},
        hours=draw(st.floats(0.5, 30)),
        max_delay_h=draw(st.none() | st.floats(0, 6)),
        deadline_h=draw(st.none() | st.floats(0, 12)),
        spot=draw(st.booleans()),
        pods=pods,
        residency=draw(st.sampled_from([None, "FR", "EU", "DE_NO"])),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> model.Snapshot:
    fleet = [draw(pools(f"p{i}")) for i in range(draw(st.integers(0, 10)))]
    rules = [draw(policies(f"r{i}")) for i in range(draw(st.integers(1, 2)))]
    jobs = [draw(workloads(f"w{i}")) for i in range(draw(st.integers(1, 14)))]
    budgets = draw(
        st.sampled_from(
            [
                [b.budget()],
                [
                    b.budget(
                        money=draw(st.floats(0, 200)),
                        kg=draw(sometimes(st.floats(0, 5))),
                        kwh=draw(sometimes(st.floats(0, 40))),
                    )
                ],
                [b.budget(money=50, action=draw(st.sampled_from(list(model.BudgetAction))))],
            ]
        )
    )
    forecasts = {}
    if draw(st.booleans()):
        for zone in ("FR", "DE", "NO"):
            values = draw(st.lists(st.floats(10, 800), min_size=4, max_size=24))
            forecasts[zone] = b.forecast(*values)
    return b.snapshot(fleet, rules, jobs, budgets=budgets, forecasts=forecasts)


@st.composite
def budgeted_snapshots(draw: st.DrawFn) -> model.Snapshot:
    """Crowded pools of few sizes under two tight budgets (money, kgCO2e and kWh), each with
    any action, shared by several classes: the improvement pass moves and swaps workloads of
    Defer, Reject and Downgrade classes between pools whose rank and price disagree."""
    fleet = [
        b.pool(
            f"p{i}",
            country=draw(st.sampled_from(["FR", "DE"])),
            gco2=draw(st.floats(10, 800)),
            free=draw(st.sampled_from([0, 1, 2, 4, 8, 12])),
            price=draw(st.floats(0.5, 5)),
            pue=draw(st.floats(1, 1.5)),
            spot=draw(st.none() | st.floats(0.1, 2)),
            watts=draw(st.sampled_from([400.0, 700.0])),
            embodied=draw(st.floats(0, 100)),
        )
        for i in range(draw(st.integers(2, 6)))
    ]
    rules = [
        b.policy(
            f"r{i}",
            countries=draw(sometimes(st.just({"FR"}))),
            match=draw(st.sampled_from([{}, {"team": "a"}, {"team": "b"}])),
            carbon_price=draw(st.sampled_from([0.0, 100.0, 5_000.0])),
            budget=draw(st.sampled_from(["team", "team", "lab", None])),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    jobs = [
        b.workload(
            f"w{i}",
            at=draw(st.integers(0, 5)),
            labels={"team": draw(st.sampled_from(["a", "b"]))},
            hours=draw(st.sampled_from([0.5, 1.0, 2.0, 4.0])),
            spot=draw(st.booleans()),
            pods=draw(st.lists(st.sampled_from([1, 2, 4]), min_size=1, max_size=2)),
        )
        for i in range(draw(st.integers(2, 14)))
    ]
    budgets = [
        b.budget(
            name,
            money=draw(st.none() | st.floats(0, 60)),
            kg=draw(st.none() | st.floats(0, 12)),
            kwh=draw(st.none() | st.floats(0, 30)),
            spent=draw(st.sampled_from([0.0, 0.0, 5.0])),
            kwh_spent=draw(st.sampled_from([0.0, 0.0, 5.0])),
            action=draw(st.sampled_from(list(model.BudgetAction))),
        )
        for name in ("team", "lab")
    ]
    return b.snapshot(fleet, rules, jobs, budgets=budgets)
