"""Read the certification credentials GpuPools reference and verify them, once per cycle.

Why this module exists: a certification that names a credential counts only if the credential
verifies (``audit.credentials``, pure). Someone must fetch the tokens from the Secrets and
ConfigMaps the pools name and know the trusted issuers; this module does, off the event loop
(``cycle`` calls ``read`` in a thread), and hands the planner verified or unverified
certifications through ``api.convert.pool_to_domain``.

Where the tokens are: a key of a ConfigMap or a Secret in the operator's namespace (the Lease's,
``OperatorConfig.lease_namespace_in_use``). GpuPools are cluster-scoped; tenants cannot write
there. A credential is public (its worth is its signature), so a ConfigMap is enough; the chart
lets the operator read only the Secrets it lists (``certificationCredentials.secrets``), so a
GpuPool author cannot point the operator at the ledger key. Nothing of a token is ever copied
into a status or an Event: messages name the object, the key and the problem.

A read that fails for a reason that may pass (a timeout, HTTP 5xx) keeps the object's last good
contents; a 404 or 403 is believed at once (the credential is gone or no longer readable).
Each object is read at most once per ``memory`` (default 10 s: a renewed credential counts within
a cycle or two, and a hundred pools cost a hundred small GETs every 10 s at most); the signature
and the dates are checked at every cycle, with the cycle's ``now``, so an expiry is seen at once.

Trust: the trusted issuers' file (``--trusted-issuers``, the chart's
``certificationCredentials.trustedIssuers`` as a mounted ConfigMap) is read again when it
changes, so a rotated key is trusted without a restart. A file that does not parse trusts
nobody (fail closed) and every credential reports why.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import logging
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pydantic
import yaml
from kubernetes import client

from greenplace.api import models
from greenplace.audit import credentials as vc
from greenplace.controller import cache as cache_

__all__ = [
    "CHART_VALUE",
    "Checked",
    "Credentials",
    "Unreadable",
    "api_reader",
    "of_pool",
    "read_trust",
    "recorded",
    "summary",
    "to_status",
]

logger = logging.getLogger(__name__)

CHART_VALUE = "certificationCredentials.secrets"  # the Secrets the chart lets the operator read
_TIMEOUT = 5.0
# Pool -> index of the certification in its spec -> the credential's verification.
Checked = Mapping[str, Mapping[int, vc.Verified | vc.Unverified]]
# (kind, name) -> the key's values, or why the object could not be read.
_Read = dict[str, str] | vc.Unverified


@dataclasses.dataclass(frozen=True)
class Unreadable:
    """A read that failed for a reason that may pass (timeout, connection, 5xx): the object's
    last good contents are kept meanwhile, so a flaky API server does not flip the pools."""

    why: vc.Unverified


Reader = Callable[[str, str, str], _Read | Unreadable]


def read_trust(path: pathlib.Path | None) -> dict[str, vc.Issuer]:
    """The trusted issuers of ``path`` (YAML or JSON; None: nobody); raises ``TrustError``."""
    if path is None:
        return {}
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise vc.TrustError(f"{path}: cannot be read as YAML ({error})") from error
    try:
        return vc.load_trust(document)
    except vc.TrustError as error:
        raise vc.TrustError(f"{path}: {error}") from error


class Credentials:
    """Verify every referenced credential; ``read`` is blocking (call it in a thread)."""

    def __init__(
        self,
        api: client.ApiClient | None,
        namespace: str,
        trust_file: pathlib.Path | None,
        *,
        memory: datetime.timedelta = datetime.timedelta(seconds=10),
        reader: Reader | None = None,
    ) -> None:
        self.namespace = namespace
        self.memory = memory.total_seconds()
        self._trust_file = trust_file
        self._trust_stamp: tuple[float, int] | None = None
        self._trust: dict[str, vc.Issuer] | vc.TrustError = {}
        self._reader = reader or api_reader(api, namespace)
        self._objects: dict[tuple[str, str], tuple[float, _Read]] = {}
        self._load_trust()

    def read(self, pools: Iterable[cache_.CachedPool], now: datetime.datetime) -> Checked:
        """Each referenced credential of ``pools``, verified at ``now``."""
        self._load_trust()
        checked: dict[str, dict[int, vc.Verified | vc.Unverified]] = {}
        wanted: set[tuple[str, str]] = set()
        for pool in pools:
            for i, certification in enumerate(pool.spec.certifications):
                if certification.credential is None:
                    continue
                kind, ref = _source(certification.credential)
                wanted.add((kind, ref.name))
                checked.setdefault(pool.name, {})[i] = self._check(
                    pool.name, certification, kind, ref, now
                )
        for gone in set(self._objects) - wanted:  # a reference removed: forget its object
            del self._objects[gone]
        return checked

    def _check(
        self,
        pool: str,
        certification: models.Certification,
        kind: str,
        ref: models.KeyRef,
        now: datetime.datetime,
    ) -> vc.Verified | vc.Unverified:
        data = self._object(kind, ref.name)
        if isinstance(data, vc.Unverified):
            return data
        token = data.get(ref.key)
        if token is None:
            return vc.Unverified(
                vc.Problem.MISSING, f"{kind} {self.namespace}/{ref.name} has no key {ref.key!r}"
            )
        if isinstance(self._trust, vc.TrustError):
            return vc.Unverified(vc.Problem.UNTRUSTED_ISSUER, f"trusts nobody: {self._trust}")
        return vc.verify(
            token,
            self._trust,
            subject=vc.pool_subject(pool),
            certification=certification.name,
            level=certification.level or "",
            now=now,
        )

    def _object(self, kind: str, name: str) -> _Read:
        at = time.monotonic()
        cached = self._objects.get((kind, name))
        if cached is not None and at - cached[0] < self.memory:
            return cached[1]
        found = self._reader(kind, self.namespace, name)
        if isinstance(found, Unreadable):
            if cached is not None and isinstance(cached[1], dict):
                logger.warning("%s; using it as last read", found.why.detail)
                found = cached[1]
            else:
                found = found.why
        self._objects[(kind, name)] = (at, found)
        return found

    def _load_trust(self) -> None:
        path = self._trust_file
        if path is None:
            return
        try:
            stat = path.stat()
            stamp = (stat.st_mtime, stat.st_size)
        except OSError:
            stamp = (-1.0, -1)
        if stamp == self._trust_stamp:
            return
        self._trust_stamp = stamp
        try:
            self._trust = read_trust(path)
            logger.info("trusting %d credential issuers from %s", len(self._trust), path)
        except vc.TrustError as error:
            logger.error("trusting no credential issuer: %s", error)
            self._trust = error


def _source(ref: models.CredentialRef) -> tuple[str, models.KeyRef]:
    if ref.secret_key_ref is not None:
        return "Secret", ref.secret_key_ref
    assert ref.config_map_key_ref is not None  # the model allows exactly one
    return "ConfigMap", ref.config_map_key_ref


def api_reader(api: client.ApiClient | None, namespace: str) -> Reader:
    """Reads Secrets and ConfigMaps: a 404 or 403 is believed, anything else may pass."""
    core = client.CoreV1Api(api)

    def read(kind: str, namespace: str, name: str) -> _Read | Unreadable:
        where = f"{kind} {namespace}/{name}"
        try:
            if kind == "Secret":
                secret = core.read_namespaced_secret(name, namespace, _request_timeout=_TIMEOUT)
                return {k: _decoded(v) for k, v in (secret.data or {}).items()}
            found = core.read_namespaced_config_map(name, namespace, _request_timeout=_TIMEOUT)
            return dict(found.data or {})
        except client.ApiException as error:
            if error.status == 404:
                return vc.Unverified(vc.Problem.MISSING, f"{where} not found")
            if error.status == 403:
                return vc.Unverified(
                    vc.Problem.MISSING,
                    f"the operator may not read {where}"
                    + (f" (list it in the chart value {CHART_VALUE})" if kind == "Secret" else ""),
                )
            return Unreadable(
                vc.Unverified(vc.Problem.MISSING, f"{where} unreadable (HTTP {error.status})")
            )
        except Exception as error:  # a network fault is this credential's problem
            return Unreadable(
                vc.Unverified(vc.Problem.MISSING, f"{where} unreadable ({type(error).__name__})")
            )

    return read


def _decoded(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""  # not a token: the verifier reports it malformed


def of_pool(
    spec: models.GpuPoolSpec, checked: Mapping[int, vc.Verified | vc.Unverified]
) -> dict[int, vc.Verified | vc.Unverified]:
    """Each certification of ``spec`` that references a credential, with its verification
    (one absent from ``checked`` was not read: it does not count)."""
    unread = vc.Unverified(vc.Problem.NOT_CHECKED, "not read this cycle")
    return {
        i: checked.get(i, unread)
        for i, c in enumerate(spec.certifications)
        if c.credential is not None
    }


def summary(
    checked: Mapping[int, vc.Verified | vc.Unverified], spec: models.GpuPoolSpec
) -> tuple[bool, str, str]:
    """The pool's CertificationsVerified condition: (status, reason, message)."""
    problems = [
        f"{spec.certifications[i].name}: {result.message}"
        for i, result in sorted(checked.items())
        if isinstance(result, vc.Unverified)
    ]
    if problems:
        return False, "CertificationUnverified", "; ".join(problems)[:4096]
    names = ", ".join(
        f"{spec.certifications[i].name} ({result.issuer})"
        for i, result in sorted(checked.items())
        if isinstance(result, vc.Verified)
    )
    return True, "CredentialsVerified", f"verified: {names}"[:4096]


def to_status(
    checked: Mapping[int, vc.Verified | vc.Unverified], spec: models.GpuPoolSpec
) -> list[models.CertificationVerification]:
    """``status.certifications``: what ``recorded`` reads back."""
    entries = []
    for i, result in sorted(checked.items()):
        name = spec.certifications[i].name
        if isinstance(result, vc.Verified):
            entries.append(
                models.CertificationVerification(
                    index=i,
                    name=name,
                    verified=True,
                    issuer=result.issuer,
                    level=result.level,
                    valid_from=result.valid_from,
                    valid_until=result.valid_until,
                )
            )
        else:
            entries.append(
                models.CertificationVerification(
                    index=i,
                    name=name,
                    verified=False,
                    problem=result.problem.value,
                    message=result.message[:1024],
                )
            )
    return entries


def recorded(bodies: Iterable[Mapping[str, Any]]) -> Checked:
    """The verifications the operator last wrote in the GpuPools' status, for
    ``greenplace explain --from-cluster`` (which has neither the trusted issuers nor the
    operator's right to read its namespace): only a status of the pool's current generation
    counts, else its credentials count as not checked."""
    found: dict[str, dict[int, vc.Verified | vc.Unverified]] = {}
    for body in bodies:
        meta, status = body.get("metadata") or {}, body.get("status") or {}
        if status.get("observedGeneration") != meta.get("generation"):
            continue
        try:
            entries = [
                models.CertificationVerification.model_validate(e)
                for e in status.get("certifications") or []
            ]
        except pydantic.ValidationError:
            continue
        found[str(meta.get("name"))] = {e.index: _from_status(e) for e in entries}
    return found


def _from_status(entry: models.CertificationVerification) -> vc.Verified | vc.Unverified:
    if entry.verified and entry.valid_until is not None:
        return vc.Verified(
            entry.issuer or "", entry.level or "", entry.valid_until, entry.valid_from
        )
    problem = next((p for p in vc.Problem if p.value == entry.problem), vc.Problem.NOT_CHECKED)
    return vc.Unverified(problem, f"as the operator recorded: {entry.message or problem.value}")
