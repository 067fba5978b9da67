"""The ledger's chain: records sealed with a sequence number, the previous record's SHA-256 and
an Ed25519 signature, and the check that names the first record changed, removed or reordered.

Why this module exists: an auditor must be able to tell from the records alone that none was
edited, dropped or moved since the operator wrote it, without trusting the store (ConfigMaps
anyone with write access to the operator's namespace can edit). So each record carries:

- ``seq``: one more than the record before it (a gap is a removed record, a lower number
  further on a reordered one);
- ``prev``: the SHA-256 of the previous record's canonical form, signature included (the
  first record ever has 64 zeros; after retention pruned older segments, the first kept
  record's ``prev`` anchors the chain on the last pruned one). Retention deletes whole
  segments only, so a chain may start on such an anchor only where the store says a pruned
  segment ended (``Located.may_anchor``): records cut from the head of a segment are named;
- ``kid`` and ``sig``: an Ed25519 signature (the ``cryptography`` package: a well-kept binding
  of OpenSSL, already greenplace's dependency; no hand-written cryptography) over the canonical
  form of every other field, by the key ``kid`` names. Ed25519 rather than the HMAC of pod
  records (``controller.records``): an auditor verifies with the public key and cannot sign.

Canonical form: JSON with sorted keys, no spaces, UTF-8 (``canonical``): the bytes signed and
hashed do not depend on how a store or a text editor re-serialised the record. Pure: no
Kubernetes here, so the CLI verifies an exported file without a cluster.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

__all__ = [
    "GENESIS",
    "Located",
    "SigningKey",
    "Tail",
    "Verification",
    "canonical",
    "digest",
    "holds",
    "key_id",
    "load_public_key",
    "public_pem",
    "seal",
    "verify",
]

GENESIS = "0" * 64  # the ``prev`` of the first record ever written
_SIG = "sig"


def canonical(value: Mapping[str, Any]) -> str:
    """``value`` as the one text that is signed and hashed (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(record: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a record's canonical form, signature included: the next ``prev``."""
    return hashlib.sha256(canonical(record).encode()).hexdigest()


def key_id(public: ed25519.Ed25519PublicKey) -> str:
    """A key's id: ``ed25519-`` and the first 16 hex digits of the SHA-256 of its raw bytes
    (valid as a ConfigMap key; a new key always gets a new id, so rotation needs no counter)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519-" + hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: ed25519.Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes, where: str) -> ed25519.Ed25519PublicKey:
    """An Ed25519 public key from PEM; ``ValueError`` naming ``where`` when it is not one."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise ValueError(f"{where}: not a PEM public key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError(f"{where}: not an Ed25519 public key ({type(key).__name__})")
    return key


class SigningKey:
    """The operator's Ed25519 private key and its id."""

    def __init__(self, private: ed25519.Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()
        self.kid = key_id(self.public)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, where: str) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{where}: not an unencrypted PEM private key ({error})") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError(
                f"{where}: not an Ed25519 key ({type(key).__name__}); fix: "
                "openssl genpkey -algorithm ed25519"
            )
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclasses.dataclass(frozen=True)
class Tail:
    """Where the chain ends: the last record's number and digest (``GENESIS`` at 0)."""

    seq: int = 0
    digest: str = GENESIS


def seal(
    entry: Mapping[str, Any], tail: Tail, key: SigningKey, at: str
) -> tuple[dict[str, Any], Tail]:
    """The record for ``entry`` after ``tail``, signed by ``key``, and the new tail."""
    record: dict[str, Any] = {
        "seq": tail.seq + 1,
        "prev": tail.digest,
        "at": at,
        "kid": key.kid,
        "entry": dict(entry),
    }
    signature = key.private.sign(canonical(record).encode())
    record[_SIG] = base64.b64encode(signature).decode()
    return record, Tail(record["seq"], digest(record))


@dataclasses.dataclass(frozen=True)
class Located:
    """One stored line and where it is (``segment line N``), as ``verify`` names it;
    ``may_anchor``: the line opens the oldest segment kept after retention deleted older ones,
    so the chain may start there on a pruned record's digest."""

    where: str
    line: str
    may_anchor: bool = False


@dataclasses.dataclass(frozen=True)
class Verification:
    """What ``verify`` found: ``problem`` is None when the chain holds."""

    records: tuple[dict[str, Any], ...]
    problem: str | None
    first_seq: int = 0
    last_seq: int = 0
    anchored: bool = False  # the first record follows pruned ones (its prev is not GENESIS)
    keys_used: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        if self.problem is not None:
            return f"ledger NOT verified: {self.problem}"
        if not self.records:
            return "ledger verified: no records"
        start = (
            f"anchored on the digest of pruned record {self.first_seq - 1}"
            if self.anchored
            else "from the first record ever"
        )
        return (
            f"ledger verified: records {self.first_seq}..{self.last_seq} "
            f"({len(self.records)}), {start}, signed by {', '.join(self.keys_used)}"
        )


def verify(lines: Sequence[Located], keys: Mapping[str, ed25519.Ed25519PublicKey]) -> Verification:
    """Check every record of ``lines`` in stored order: readable, signed by one of ``keys``
    unchanged, numbered one after the other and chained by digest. The first failure is named
    (record number and where it is stored), and checking stops there."""
    records: list[dict[str, Any]] = []
    parsed = [(_parse(item), item) for item in lines]
    seqs_after: list[set[int]] = [set() for _ in parsed]
    later: set[int] = set()
    for i in range(len(parsed) - 1, -1, -1):  # the numbers stored after each position
        seqs_after[i] = set(later)
        record = parsed[i][0]
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            later.add(record["seq"])
    used: list[str] = []

    def failed(problem: str) -> Verification:
        return Verification(tuple(records), problem, keys_used=tuple(used))

    previous: dict[str, Any] | None = None
    for i, (record, item) in enumerate(parsed):
        if isinstance(record, str):
            return failed(f"{item.where} is not a ledger record: {record}")
        seq = record["seq"]
        bad = _signature_problem(record, keys)
        if bad is not None:
            return failed(f"record {seq} ({item.where}) was changed: {bad}")
        if record["kid"] not in used:
            used.append(record["kid"])
        if previous is not None:
            expected = previous["seq"] + 1
            if seq != expected:
                if expected in seqs_after[i]:
                    return failed(
                        f"record {expected} is out of order: record {seq} ({item.where}) "
                        f"stands where it belongs, after record {previous['seq']}"
                    )
                return failed(
                    f"record {expected} was removed: record {seq} ({item.where}) follows "
                    f"record {previous['seq']}"
                )
            if record["prev"] != digest(previous):
                return failed(
                    f"record {seq} ({item.where}) does not chain on record {previous['seq']}: "
                    "its prev digest differs (a record between them was replaced)"
                )
        elif record["prev"] == GENESIS and seq != 1:
            return failed(
                f"record {seq} ({item.where}) claims to be the first record ever but is "
                f"numbered {seq}: records 1..{seq - 1} were removed"
            )
        elif record["prev"] != GENESIS and not item.may_anchor:
            return failed(
                f"record {seq - 1} was removed: record {seq} ({item.where}) chains on it, and "
                "retention deletes whole segments only, the oldest first"
            )
        records.append(record)
        previous = record
    if not records:
        return Verification((), None)
    return Verification(
        tuple(records),
        None,
        first_seq=records[0]["seq"],
        last_seq=records[-1]["seq"],
        anchored=records[0]["prev"] != GENESIS,
        keys_used=tuple(used),
    )


def holds(verification: Verification, earlier: Mapping[str, Any]) -> str | None:
    """Why a verified chain is not a continuation of ``earlier``, the last record of an earlier
    export (None: it is, or retention pruned that record since). A chain alone cannot show that
    its newest records were cut off; an earlier export's last record, kept by the auditor, can."""
    seq = earlier.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "the earlier export's last record has no number"
    if not verification.records or seq > verification.last_seq:
        last = verification.last_seq if verification.records else 0
        return (
            f"records {last + 1}..{seq} were removed: the earlier export held up to record "
            f"{seq}, the ledger ends at record {last}"
        )
    if seq < verification.first_seq:
        return None  # pruned by retention since: the anchored chain still covers what is kept
    record = verification.records[seq - verification.first_seq]
    if digest(record) != digest(earlier):
        return f"record {seq} is not the one the earlier export held (its digest differs)"
    return None


def _parse(item: Located) -> dict[str, Any] | str:
    """The record on ``item``'s line, or why it is not one."""
    try:
        record = json.loads(item.line)
    except json.JSONDecodeError as error:
        return f"not JSON ({error.msg} at column {error.colno})"
    if not isinstance(record, dict):
        return "not a JSON object"
    for field, kind in (("seq", int), ("prev", str), ("kid", str), (_SIG, str), ("at", str)):
        if not isinstance(record.get(field), kind) or isinstance(record.get(field), bool):
            return f"field {field!r} missing or not a {kind.__name__}"
    if not isinstance(record.get("entry"), dict):
        return "field 'entry' missing or not an object"
    return record


def _signature_problem(
    record: Mapping[str, Any], keys: Mapping[str, ed25519.Ed25519PublicKey]
) -> str | None:
    kid = record["kid"]
    public = keys.get(kid)
    if public is None:
        known = ", ".join(sorted(keys)) or "none"
        return f"signed by key {kid}, which is not among the trusted public keys ({known})"
    try:
        signature = base64.b64decode(record[_SIG], validate=True)
    except (binascii.Error, ValueError):
        return "its signature is not base64"
    unsigned = {k: v for k, v in record.items() if k != _SIG}
    try:
        public.verify(signature, canonical(unsigned).encode())
    except InvalidSignature:
        return f"its signature (key {kid}) does not match its content"
    return None


def lines_of(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Records as stored lines (canonical JSON)."""
    return [canonical(r) for r in records]
