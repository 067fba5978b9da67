"""Where the ledger lives: append-only segments kept as ConfigMaps of the operator's namespace,
and the Ed25519 key that signs them (a Secret there), with its public half published beside.

Why this store: the ledger must be durable across restarts and leader changes, and exist
wherever greenplace runs, with nothing more to install or back up than the cluster itself.
The API server (etcd) is the one store every greenplace user already runs, backs up and secures
(RBAC, encryption at rest), in and out of cluster (``greenplace operate`` reaches the same API
server). A PersistentVolume would tie the ledger to one replica's node and give two replicas no
way to agree on one chain; an object store or a database is one more component to run. So:

- Segments ``greenplace-ledger-000001``, ``-000002`` ..., labelled ``greenplace.dev/ledger``,
  each holding lines of canonical JSON records (``chain``) under ``records.jsonl``, at most
  ``segment_bytes`` (512 KiB by default: under the 1 MiB object limit with room to spare).
- One chain across replicas and leader changes: every write is an update conditioned on the
  segment's ``resourceVersion`` (or a create, which fails if the name exists). A stale leader's
  append fails with a conflict (``ConflictError``); the writer reads the tail again and retries
  (``controller.ledger``). A full segment is first marked sealed (an annotation, again
  conditioned), so a writer still holding the old head cannot append to it after another
  writer started the next segment.
- Retention: at most ``retention_segments`` segments; the oldest are deleted as new ones start.
  The first kept record's ``prev`` is the digest of the last pruned one, so the rest still
  verifies (``chain.verify`` reports the chain as anchored), from the first line of the oldest
  segment kept only (``located``): records cut from inside a segment are named as removed.

The key: ``KEY_SECRET`` (``private.pem``, PKCS#8), created with a fresh key when missing, or a
file (``--ledger-key-file``, the chart mounts a Secret). Its public key is added to the
ConfigMap ``KEYS_CONFIGMAP`` under its key id and never removed there, so after a rotation
(a new key: a new id) every record still verifies; auditors export and pin them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from kubernetes import client

from greenplace import errors
from greenplace.audit import chain

__all__ = [
    "KEYS_CONFIGMAP",
    "KEY_SECRET",
    "ConflictError",
    "Segment",
    "Store",
    "load_signing_key",
    "publish_key",
    "published_keys",
]

logger = logging.getLogger("greenplace.ledger")

PREFIX = "greenplace-ledger-"
LABEL = "greenplace.dev/ledger"
DATA_KEY = "records.jsonl"
SEALED = "greenplace.dev/ledger-sealed"
KEYS_CONFIGMAP = "greenplace-ledger-keys"
KEY_SECRET = "greenplace-ledger-key"
_PRIVATE_FIELD = "private.pem"
SEGMENT_BYTES = 512 * 1024
RETENTION_SEGMENTS = 100
_TIMEOUT = (5, 30)
_METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_LABELS = {"app.kubernetes.io/part-of": "greenplace"}


class ConflictError(errors.GreenplaceError):
    """Another writer changed the ledger since it was read: read the tail again, retry."""


@dataclasses.dataclass(frozen=True)
class Segment:
    name: str
    index: int
    resource_version: str
    lines: tuple[str, ...]
    sealed: bool = False

    @property
    def size(self) -> int:
        return sum(len(line.encode()) + 1 for line in self.lines)


def segment_name(index: int) -> str:
    return f"{PREFIX}{index:06d}"


def segment_index(name: str) -> int | None:
    """The number in a segment's name (None: not a segment's name)."""
    suffix = name[len(PREFIX) :]
    return int(suffix) if name.startswith(PREFIX) and suffix.isdigit() else None


def located(segments: Sequence[tuple[str, Sequence[str]]]) -> list[chain.Located]:
    """The lines of ``segments`` (name, lines; oldest first) as ``chain.verify`` reads them:
    the chain may start on a pruned record's digest only at the first line of the oldest
    segment, and only if that is not segment 1 (retention deleted the ones before it)."""
    out = []
    for position, (name, lines) in enumerate(segments):
        index = segment_index(name)
        pruned_before = position == 0 and index is not None and index > 1
        for number, line in enumerate(lines, 1):
            where = f"{name} line {number}"
            out.append(chain.Located(where, line, may_anchor=pruned_before and number == 1))
    return out


def _segment(body: Any) -> Segment | None:
    meta = body.metadata
    index = segment_index(meta.name)
    if index is None:
        return None
    text = (body.data or {}).get(DATA_KEY, "")
    return Segment(
        meta.name,
        index,
        meta.resource_version,
        tuple(line for line in text.split("\n") if line),
        (meta.annotations or {}).get(SEALED) == "true",
    )


class Store:
    """The ledger's segments in ``namespace`` (synchronous Kubernetes calls)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        retention_segments: int = RETENTION_SEGMENTS,
    ) -> None:
        if retention_segments < 1:
            raise ValueError("ledger retention must keep at least 1 segment")
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.segment_bytes = segment_bytes
        self.retention_segments = retention_segments

    def segments(self) -> list[Segment]:
        """Every segment, oldest first."""
        found = self.core.list_namespaced_config_map(
            self.namespace, label_selector=f"{LABEL}=segment", _request_timeout=_TIMEOUT
        )
        segments = [s for s in (_segment(b) for b in found.items) if s is not None]
        return sorted(segments, key=lambda s: s.index)

    def stale(self, head: Segment | None) -> bool:
        """Whether another writer changed the ledger since ``head`` was read: one small read
        (the head's metadata only, or an empty listing), made before each cycle's append."""
        if head is None:
            found = self.core.list_namespaced_config_map(
                self.namespace, label_selector=f"{LABEL}=segment", limit=1,
                _request_timeout=_TIMEOUT,
            )  # fmt: skip
            return bool(found.items)
        api = self.core.api_client
        request = api.param_serialize(
            "GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{head.name}",
            header_params={"Accept": _METADATA_ONLY}, auth_settings=["BearerToken"],
        )  # fmt: skip
        response = api.call_api(*request, _request_timeout=_TIMEOUT)
        response.read()
        if response.status == 404:
            return True
        if response.status >= 400:
            raise client.ApiException(status=response.status, reason=response.reason)
        meta = json.loads(response.data)
        return bool(meta["metadata"]["resourceVersion"] != head.resource_version)

    def append(self, head: Segment | None, lines: list[str]) -> Segment:
        """Append ``lines`` after ``head`` (the newest segment as read; None: none yet), starting
        new segments as they fill; return the new head. ``ConflictError`` when another writer
        wrote first (nothing of ``lines`` after the conflicting write is stored then)."""
        pending = list(lines)
        while pending:
            if head is None or head.sealed:
                index = 1 if head is None else head.index + 1
                take = self._fitting(pending, 0)
                head = self._create(index, pending[:take])
                del pending[:take]
                self._prune(index)
                continue
            take = self._fitting(pending, head.size)
            if take:
                head = self._replace(head, (*head.lines, *pending[:take]), sealed=False)
                del pending[:take]
            if pending:
                head = self._replace(head, head.lines, sealed=True)
        assert head is not None
        return head

    def _fitting(self, pending: list[str], used: int) -> int:
        """How many of ``pending`` fit after ``used`` bytes (at least one in an empty segment)."""
        count = 0
        for line in pending:
            size = len(line.encode()) + 1
            if used + size > self.segment_bytes and (count or used):
                break
            used += size
            count += 1
        return count

    def _body(self, name: str, lines: tuple[str, ...], sealed: bool, rv: str | None) -> Any:
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {**_LABELS, LABEL: "segment"},
            "annotations": {SEALED: "true"} if sealed else {},
        }
        if rv is not None:
            metadata["resourceVersion"] = rv
        return {"metadata": metadata, "data": {DATA_KEY: "".join(f"{ln}\n" for ln in lines)}}

    def _create(self, index: int, lines: list[str]) -> Segment:
        name = segment_name(index)
        try:
            made = self.core.create_namespaced_config_map(
                self.namespace, self._body(name, tuple(lines), False, None),
                _request_timeout=_TIMEOUT,
            )  # fmt: skip
        except client.ApiException as error:
            if error.status == 409:
                raise ConflictError(f"{name} was created by another writer") from None
            raise
        logger.info("ledger: started segment %s/%s", self.namespace, name)
        return Segment(name, index, made.metadata.resource_version, tuple(lines))

    def _replace(self, head: Segment, lines: tuple[str, ...], *, sealed: bool) -> Segment:
        try:
            made = self.core.replace_namespaced_config_map(
                head.name, self.namespace,
                self._body(head.name, lines, sealed, head.resource_version),
                _request_timeout=_TIMEOUT,
            )  # fmt: skip
        except client.ApiException as error:
            if error.status in (404, 409):
                raise ConflictError(f"{head.name} changed since it was read") from None
            raise
        return Segment(head.name, head.index, made.metadata.resource_version, lines, sealed)

    def _prune(self, newest: int) -> None:
        """Delete the segments older than the ``retention_segments`` newest."""
        for segment in self.segments():
            if segment.index > newest - self.retention_segments:
                break
            try:
                self.core.delete_namespaced_config_map(
                    segment.name, self.namespace, _request_timeout=_TIMEOUT
                )
                logger.info("ledger: pruned segment %s (retention)", segment.name)
            except client.ApiException as error:
                if error.status != 404:
                    raise


def load_signing_key(
    api: client.ApiClient, namespace: str, key_file: pathlib.Path | None
) -> chain.SigningKey:
    """The ledger key from ``key_file``, else from the Secret ``KEY_SECRET`` (created with a new
    key when missing; two replicas racing: the loser reads the winner's)."""
    if key_file is not None:
        return chain.SigningKey.from_pem(key_file.read_bytes(), str(key_file))
    import base64  # noqa: PLC0415 - only this path decodes Secret data

    core = client.CoreV1Api(api)
    where = f"Secret {namespace}/{KEY_SECRET}"
    for _ in range(3):
        try:
            found = core.read_namespaced_secret(KEY_SECRET, namespace, _request_timeout=_TIMEOUT)
            data = (found.data or {}).get(_PRIVATE_FIELD)
            if data is None:
                raise ValueError(
                    f"{where} has no {_PRIVATE_FIELD!r}: put an Ed25519 PEM key there, or "
                    "delete the Secret to have a new key made"
                )
            return chain.SigningKey.from_pem(base64.b64decode(data), f"{where} {_PRIVATE_FIELD}")
        except client.ApiException as error:
            if error.status != 404:
                raise
        key = chain.SigningKey.generate()
        body = {
            "metadata": {"name": KEY_SECRET, "labels": _LABELS},
            "type": "Opaque",
            "data": {_PRIVATE_FIELD: base64.b64encode(key.private_pem()).decode()},
        }
        try:
            core.create_namespaced_secret(namespace, body, _request_timeout=_TIMEOUT)
            logger.info("ledger: created the signing key %s (key id %s)", where, key.kid)
        except client.ApiException as error:
            if error.status != 409:
                raise
    raise RuntimeError(f"could not read or create {where}")


def publish_key(api: client.ApiClient, namespace: str, key: chain.SigningKey) -> None:
    """Add ``key``'s public half to ``KEYS_CONFIGMAP`` (kept there after rotations)."""
    core = client.CoreV1Api(api)
    pem = chain.public_pem(key.public)
    for _ in range(5):
        try:
            found = core.read_namespaced_config_map(
                KEYS_CONFIGMAP, namespace, _request_timeout=_TIMEOUT
            )
        except client.ApiException as error:
            if error.status != 404:
                raise
            body = {"metadata": {"name": KEYS_CONFIGMAP, "labels": _LABELS}, "data": {key.kid: pem}}
            try:
                core.create_namespaced_config_map(namespace, body, _request_timeout=_TIMEOUT)
                return
            except client.ApiException as created:
                if created.status != 409:
                    raise
                continue
        if (found.data or {}).get(key.kid) == pem:
            return
        found.data = {**(found.data or {}), key.kid: pem}
        try:
            core.replace_namespaced_config_map(
                KEYS_CONFIGMAP, namespace, found, _request_timeout=_TIMEOUT
            )
            logger.info("ledger: published public key %s in %s", key.kid, KEYS_CONFIGMAP)
            return
        except client.ApiException as error:
            if error.status != 409:
                raise
    raise RuntimeError(
        f"could not publish the ledger key in ConfigMap {namespace}/{KEYS_CONFIGMAP}"
    )


def published_keys(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """The public keys (PEM by key id) in ``KEYS_CONFIGMAP``; empty when there is none."""
    core = client.CoreV1Api(api)
    try:
        found = core.read_namespaced_config_map(
            KEYS_CONFIGMAP, namespace, _request_timeout=_TIMEOUT
        )
    except client.ApiException as error:
        if error.status == 404:
            return {}
        raise
    return dict(found.data or {})


def trusted(pems: Mapping[str, str]) -> dict[str, ed25519.Ed25519PublicKey]:
    """Public keys by id from PEM texts; the id is recomputed from each key, so a key filed
    under another key's id is not trusted for it."""
    keys = {}
    for label, pem in pems.items():
        key = chain.load_public_key(pem, f"public key {label}")
        keys[chain.key_id(key)] = key
    return keys
