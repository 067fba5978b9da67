"""What a person types in a snapshot file is checked as the API server checks it.

Countries, regimes and the data-residency label go through the same rules as the CRDs
(``domain.countries``), so ``fr``, ``FRA`` or ``France`` is refused with the field and the fix
instead of silently matching no pool; and every key left out means the domain model's default.
"""

from __future__ import annotations

import datetime
import pathlib
import re

import pytest

from greenplace.domain import model
from greenplace.engine import snapshot_file

POOL = "{name: a, gpusTotal: 8, gpusFree: 8, pricePerGpuHour: 2"
POLICY = "{namespace: ml, name: p"
WORKLOAD = "{namespace: ml, name: w, gpus: 1, created: '2026-01-01T00:00:00Z'"
FIX = "is not an ISO 3166-1 alpha-2 country code in upper case, such as FR or DE"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"pools: [{POOL}, location: {{country: fr}}}}]",
            f"pools[0].location.country: 'fr' {FIX} (did you mean FR?)"),
        (f"pools: [{POOL}, location: {{country: FRA}}}}]",
            f"pools[0].location.country: 'FRA' {FIX}"),
        (f"pools: [{POOL}, location: {{country: France}}}}]",
            f"pools[0].location.country: 'France' {FIX}"),
        (f"pools: [{POOL}, jurisdiction: {{legalHome: us}}}}]",
            f"pools[0].jurisdiction.legalHome: 'us' {FIX} (did you mean US?)"),
        (f"policies: [{POLICY}, allowedCountries: [FR, Germany]}}]",
            f"policies[0].allowedCountries[1]: 'Germany' {FIX}"),
        (f"policies: [{POLICY}, allowedRegimes: [eu]}}]",
            "policies[0].allowedRegimes[0]: expected one of EEA, EU, got 'eu'"),
        (f"workloads: [{WORKLOAD}, labels: {{greenplace.dev/data-residency: FR_Germany}}}}]",
            "workloads[0].labels.greenplace.dev/data-residency: greenplace.dev/data-residency="
            "'FR_Germany': 'Germany' is neither an ISO 3166-1 alpha-2 country code in upper "
            "case, such as FR or DE nor a regime (EEA, EU); join codes with '_'"),
        (f"workloads: [{WORKLOAD}, labels: {{greenplace.dev/data-residency: 'FR,DE'}}}}]",
            "'FR,DE' is neither"),
    ],
)  # fmt: skip
def test_a_country_the_api_refuses_is_refused_with_its_field_and_fix(
    text: str, message: str
) -> None:
    with pytest.raises(snapshot_file.SnapshotFileError) as error:
        snapshot_file.loads(text)
    assert message in str(error.value)


def test_what_the_api_accepts_is_read() -> None:
    text = f"""
pools: [{POOL}, location: {{country: FR}}, jurisdiction: {{legalHome: US}}}},
        {{name: b, gpusTotal: 1, gpusFree: 1, pricePerGpuHour: 1, location: {{country: ''}}}}]
policies: [{POLICY}, allowedCountries: [FR, DE], allowedRegimes: [EU, EEA]}}]
workloads: [{WORKLOAD}, labels: {{greenplace.dev/data-residency: FR_EU}}}}]
"""
    snapshot, _ = snapshot_file.loads(text)
    assert [p.location.country for p in snapshot.pools] == ["FR", ""]  # "": location unknown
    assert snapshot.policies[0].allowed_countries == frozenset({"FR", "DE"})
    assert snapshot.workloads[0].data_residency == frozenset({"FR", "EU"})


def test_a_key_left_out_means_the_domain_models_default() -> None:
    text = f"""
pools: [{POOL}}}]
policies: [{POLICY}}}]
budgets: [{{namespace: ml, name: b, periodEnd: "2026-02-01T00:00:00Z"}}]
workloads: [{WORKLOAD}}}]
"""
    snapshot, _ = snapshot_file.loads(text)
    created = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    unknown = model.Location(provider="", region="", country="", grid_zone="")
    period_end = datetime.datetime(2026, 2, 1, tzinfo=datetime.UTC)
    budget = model.Budget(namespace="ml", name="b", period_end=period_end)
    assert snapshot.pools == (model.Pool("a", unknown, "", 8, 8, 2.0, currency=budget.currency),)
    assert snapshot.policies == (model.Policy(namespace="ml", name="p"),)
    assert snapshot.budgets == (budget,)
    # A workload of the file is one pod named after it (the format's own default).
    assert snapshot.workloads == (model.Workload("ml", "w", 1, created, pods=("w",)),)


def test_the_planner_docs_state_the_default_carbon_price_of_snapshot_files() -> None:
    docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "planner.md"
    stated = re.search(
        r"Snapshot\s+files \(`greenplace explain`\) default to ([\d,.]+)", docs.read_text()
    )
    assert stated is not None, "docs/planner.md no longer states the snapshot files' default"
    (policy,) = snapshot_file.loads("policies: [{namespace: ml, name: p}]")[0].policies
    assert float(stated.group(1).replace(",", "")) == policy.carbon_price_per_tco2e


def test_a_defer_budget_without_its_period_end_is_refused() -> None:
    """It would defer work to no time (issue 11 item 9); the default action is Defer."""
    text = f"""
pools: [{POOL}}}]
budgets: [{{namespace: ml, name: b}}]
"""
    with pytest.raises(snapshot_file.SnapshotFileError, match=r"budgets\[0\]\.periodEnd: required"):
        snapshot_file.loads(text)
    reject = text.replace("name: b}", "name: b, action: Reject}")
    (budget,) = snapshot_file.loads(reject)[0].budgets
    assert budget.period_end is None and budget.action == model.BudgetAction.REJECT
