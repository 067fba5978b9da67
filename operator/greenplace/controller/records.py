"""Placement records that only the operator can write: signed with a key tenants never see.

Why this module exists: greenplace writes its decision on each pod it places (annotation
``greenplace.dev/placement``) and reads it back to count GPUs released to a pool but not yet
bound, and to recover budget charges after a crash. A pod's annotations are writable by anyone
who may edit the pod, in any namespace; a record read back unverified lets a tenant zero other
teams' capacity or charge (or escape) a budget with a forged annotation. So every record carries
an HMAC-SHA256 (Python's ``hmac``, RFC 2104) over the record and the pod's UID, keyed by a
secret that lives in a Secret of the operator's namespace (``load_key``): a record copied to
another pod, edited, or invented fails verification and is ignored (and reported).

The admission policies also refuse any write of these annotations by anyone but the operator
in governed namespaces; the signature makes records trustworthy even where no policy applies
(ungoverned namespaces) or when the policies are not installed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from kubernetes import client

__all__ = ["KEY_SECRET", "SIGNATURE", "Signer", "load_key", "read_key"]

logger = logging.getLogger("greenplace.records")

KEY_SECRET = "greenplace-record-key"
SIGNATURE = "sig"
_KEY_FIELD = "key"


class Signer:
    """Signs and verifies placement records with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a record key needs at least 16 bytes")
        self._key = key

    def _digest(self, uid: str, record: Mapping[str, Any]) -> str:
        unsigned = {k: v for k, v in record.items() if k != SIGNATURE}
        payload = json.dumps([uid, unsigned], sort_keys=True, separators=(",", ":"))
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def sign(self, uid: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` with its signature for the pod ``uid``."""
        return {**record, SIGNATURE: self._digest(uid, record)}

    def verify(self, uid: str, record: Mapping[str, Any]) -> bool:
        """Whether greenplace wrote ``record`` for the pod ``uid``, unchanged."""
        signature = record.get(SIGNATURE)
        return isinstance(signature, str) and hmac.compare_digest(
            signature, self._digest(uid, record)
        )


def load_key(api: client.ApiClient, namespace: str) -> bytes:
    """The record key from the Secret ``KEY_SECRET`` of ``namespace``; created when missing.

    Every replica reads the same Secret, so any of them can verify what another signed. Two
    replicas creating it at once: the loser of the race reads the winner's.
    """
    core = client.CoreV1Api(api)
    for _ in range(3):
        found = read_key(api, namespace)
        if found is not None:
            return found
        body = {
            "metadata": {
                "name": KEY_SECRET,
                "labels": {"app.kubernetes.io/part-of": "greenplace"},
            },
            "type": "Opaque",
            "data": {_KEY_FIELD: base64.b64encode(secrets.token_bytes(32)).decode()},
        }
        try:
            core.create_namespaced_secret(namespace, body, _request_timeout=(5, 15))
            logger.info("created the placement-record key Secret %s/%s", namespace, KEY_SECRET)
        except client.ApiException as error:
            if error.status != 409:
                raise
    raise RuntimeError(f"could not read or create Secret {namespace}/{KEY_SECRET}")


def read_key(api: client.ApiClient, namespace: str) -> bytes | None:
    """The record key from the Secret ``KEY_SECRET`` of ``namespace``, None when there is none;
    never creates it (``greenplace explain --from-cluster`` reads it to trust what the
    operator signed, as the operator does)."""
    try:
        found = client.CoreV1Api(api).read_namespaced_secret(
            KEY_SECRET, namespace, _request_timeout=(5, 15)
        )
    except client.ApiException as error:
        if error.status != 404:
            raise
        return None
    try:
        return base64.b64decode((found.data or {})[_KEY_FIELD])
    except KeyError:
        raise ValueError(
            f"Secret {namespace}/{KEY_SECRET} has no key {_KEY_FIELD!r}: delete it and "
            "restart the operator to create a new one"
        ) from None
