"""The ledger's chain: an untouched chain verifies; an edited, removed or reordered record, a
swapped signature, an unknown key or a broken line fails, naming the first record concerned.
Real Ed25519 keys (``cryptography``); the records are what the operator seals."""

from __future__ import annotations

import json

import pytest

from greenplace.audit import chain, store

AT = "2026-03-01T10:00:00.000000Z"


def sealed(count: int, key: chain.SigningKey | None = None) -> list[str]:
    key = key or KEY
    tail, lines = chain.Tail(), []
    for i in range(count):
        record, tail = chain.seal({"workload": f"ml/job-{i}", "outcome": "Placed"}, tail, key, AT)
        lines.append(chain.canonical(record))
    return lines


KEY = chain.SigningKey.generate()
KEYS = {KEY.kid: KEY.public}


def check(lines: list[str], keys: dict[str, object] | None = None) -> chain.Verification:
    located = [chain.Located(f"seg line {i}", line) for i, line in enumerate(lines, 1)]
    return chain.verify(located, keys or KEYS)  # type: ignore[arg-type]


def test_an_untouched_chain_verifies_from_the_first_record() -> None:
    result = check(sealed(5))
    assert result.ok, result.problem
    assert (result.first_seq, result.last_seq, result.anchored) == (1, 5, False)
    assert result.summary().startswith("ledger verified: records 1..5 (5), from the first record")


def test_a_chain_whose_first_records_were_pruned_verifies_as_anchored() -> None:
    lines = sealed(5)
    kept = store.located([("greenplace-ledger-000002", lines[2:4]),
                          ("greenplace-ledger-000003", lines[4:])])  # fmt: skip
    result = chain.verify(kept, KEYS)
    assert result.ok, result.problem
    assert (result.first_seq, result.anchored) == (3, True)
    assert "anchored on the digest of pruned record 2" in result.summary()


def test_records_cut_from_the_head_of_segment_1_are_named_not_taken_for_retention() -> None:
    """Retention deletes whole segments, the oldest first: segment 1 follows nothing pruned."""
    kept = store.located([("greenplace-ledger-000001", sealed(5)[2:])])
    result = chain.verify(kept, KEYS)
    assert result.problem is not None and result.problem.startswith(
        "record 2 was removed: record 3 (greenplace-ledger-000001 line 1) chains on it"
    ), result.problem


def edited(line: str, **changes: object) -> str:
    record = json.loads(line)
    record["entry"].update(changes)
    return chain.canonical(record)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda ls: [*ls[:2], edited(ls[2], workload="ml/other"), *ls[3:]],
         "record 3 (seg line 3) was changed: its signature (key"),
        (lambda ls: [*ls[:2], *ls[3:]], "record 3 was removed: record 4 (seg line 3) follows"),
        (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]],
         "record 2 is out of order: record 3 (seg line 2) stands where it belongs"),
        (lambda ls: ls[:-1], None),
    ],
    ids=["edited", "removed", "reordered", "last-dropped-is-a-shorter-valid-chain"],
)  # fmt: skip
def test_tampering_fails_naming_the_first_record(tamper: object, expected: str | None) -> None:
    result = check(tamper(sealed(5)))  # type: ignore[operator]
    if expected is None:  # removing the newest record leaves a valid, shorter chain
        assert result.ok and result.last_seq == 4
        return
    assert not result.ok
    assert result.problem is not None and result.problem.startswith(expected), result.problem


def test_a_signature_swapped_from_another_record_fails_naming_the_record() -> None:
    lines = sealed(4)
    records = [json.loads(line) for line in lines]
    records[1]["sig"] = records[2]["sig"]
    result = check([chain.canonical(r) for r in records])
    assert result.problem == (
        f"record 2 (seg line 2) was changed: its signature (key {KEY.kid}) does not match "
        "its content"
    )


def test_a_record_signed_by_an_untrusted_key_fails_naming_the_key() -> None:
    other = chain.SigningKey.generate()
    result = check(sealed(2, other))
    assert result.problem is not None
    assert f"record 1 (seg line 1) was changed: signed by key {other.kid}" in result.problem


def test_rotation_every_published_key_verifies_its_records() -> None:
    old, new = chain.SigningKey.generate(), chain.SigningKey.generate()
    record, tail = chain.seal({"n": 1}, chain.Tail(), old, AT)
    second, _ = chain.seal({"n": 2}, tail, new, AT)
    lines = [chain.canonical(record), chain.canonical(second)]
    assert check(lines, {old.kid: old.public, new.kid: new.public}).ok
    assert check(lines, {old.kid: old.public}).problem is not None


def test_a_record_claiming_to_start_the_chain_but_numbered_later_fails() -> None:
    lines = sealed(3)
    record = json.loads(lines[2])
    record["prev"] = chain.GENESIS  # and so re-signing would be needed: the signature fails
    result = check([chain.canonical(record)])
    assert result.problem is not None and "record 3 (seg line 1) was changed" in result.problem


def test_a_line_that_is_no_record_is_named() -> None:
    result = check([*sealed(1), "{not json"])
    assert result.problem is not None
    assert result.problem.startswith("seg line 2 is not a ledger record: not JSON")


def test_canonical_form_ignores_how_the_store_spaced_the_json() -> None:
    lines = sealed(2)
    spaced = [json.dumps(json.loads(line), indent=2, sort_keys=False) for line in lines]
    assert check(spaced).ok


def test_a_chain_continues_an_earlier_export_unless_its_newest_records_were_cut() -> None:
    lines = sealed(6)
    earlier = json.loads(lines[3])  # an export made when record 4 was the newest
    assert chain.holds(check(lines), earlier) is None
    assert chain.holds(check(lines[:4]), earlier) is None
    assert chain.holds(check(lines[:2]), earlier) == (
        "records 3..4 were removed: the earlier export held up to record 4, the ledger ends at "
        "record 2"
    )
    other = json.loads(sealed(6, chain.SigningKey.generate())[3])  # another chain's record 4
    assert chain.holds(check(lines), other) == (
        "record 4 is not the one the earlier export held (its digest differs)"
    )
    pruned = store.located([("greenplace-ledger-000002", lines[4:])])
    assert chain.holds(chain.verify(pruned, KEYS), earlier) is None  # retention pruned it since
