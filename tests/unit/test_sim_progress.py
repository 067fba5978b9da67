"""What `greenplace simulate` says while it runs, and when its shared data is missing.

Why this test exists: a run of a minute that prints nothing after its first two seconds looks
hung; each strategy's progress line says how long is left, and the oracle (most of a run)
reports from inside HiGHS with an upper bound on its time. A scenario whose traces live in the
workspace's reference data must say, when they are missing, which variable points there.
"""

from __future__ import annotations

import pathlib

import pytest

from greenplace.cli import main, simulate
from greenplace.sim import loading, oracle
from tests.unit.test_sim_replay import hand_scenario


def test_a_replay_reports_every_5_percent_with_the_time_left() -> None:
    lines: list[str] = []
    now = [100.0]
    progress = simulate.Progress(clock=lambda: now[0], write=lines.append)
    progress("greenplace", 0.0)
    now[0] = 110.0
    progress("greenplace", 0.25)  # 10 s for a quarter: 30 s to go
    progress("greenplace", 0.26)  # same 5 % step: not repeated
    now[0] = 140.0
    progress("greenplace", 1.0)
    assert lines == [
        "  greenplace:   0% of simulated time",
        "  greenplace:  25% of simulated time, about 30 s left",
        "  greenplace: 100% of simulated time",
    ]


def test_the_oracle_reports_its_bound_and_gap_every_tenth_of_its_time_limit() -> None:
    lines: list[str] = []
    progress = simulate.Progress(write=lines.append)
    progress.oracle(0.0, 120.0, None, False)
    progress.oracle(3.0, 120.0, None, False)  # same tenth: not repeated
    progress.oracle(61.0, 120.0, 0.25, False)
    progress.oracle(75.0, 120.0, 0.0123, True)
    assert lines == [
        "  oracle: 0 s of at most 2 min 00 s (time limit), no solution yet, "
        "at most 2 min 00 s left",
        "  oracle: 1 min 01 s of at most 2 min 00 s (time limit), proven gap 25%, "
        "at most 59 s left",
        "  oracle: done in 1 min 15 s, proven gap 1.23%",
    ]


def test_the_oracle_calls_progress_from_start_to_end() -> None:
    calls: list[tuple[float, float, float | None, bool]] = []
    oracle.solve(
        hand_scenario(),
        oracle.Settings(slot_minutes=60, time_limit_s=30),
        lambda *call: calls.append(call),
    )
    assert calls[0] == (0.0, 30.0, None, False)
    elapsed, limit, gap, done = calls[-1]
    assert done and limit == 30.0 and gap is not None and gap <= 1e-4
    assert 0 < elapsed <= 30 and all(not c[3] for c in calls[:-1])


def test_a_failing_progress_is_raised_not_turned_into_a_solver_error() -> None:
    def broken(elapsed: float, limit: float, gap: float | None, done: bool) -> None:
        if elapsed > 0 and not done:  # inside HiGHS's callback
            raise RuntimeError("stderr is closed")

    with pytest.raises(RuntimeError, match="stderr is closed"):
        oracle.solve(hand_scenario(), oracle.Settings(slot_minutes=60), broken)


def test_a_missing_shared_trace_names_greenplace_shared_data(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENPLACE_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError) as raised:
        loading.read_signal("${GREENPLACE_SHARED_DATA}/carbon-intensity/fr_ci.csv", tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert f"GREENPLACE_SHARED_DATA={tmp_path / 'nowhere'}" in message
    assert "set GREENPLACE_SHARED_DATA to the folder" in message


def test_simulate_exits_2_with_one_line_when_the_shared_data_is_missing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GREENPLACE_SHARED_DATA", str(tmp_path))
    scenario = pathlib.Path(__file__).resolve().parents[2] / "examples/simulate/scenario.yaml"
    assert main.main(["simulate", str(scenario), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "GREENPLACE_SHARED_DATA" in err
