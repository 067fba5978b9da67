"""Read the FOCUS billing exports the BillingExports name, each on its own interval.

Why this module exists: the bill arrives as files a provider writes into a bucket (or that a
job copies onto a volume), re-issued as the month goes on. A BillingExport says where they are
and how often to look; this module lists them on that interval, reads them again only when an
object's size or version changed (an export is a large file, a listing is one small request),
and keeps, per BillingExport, the contents that count and why (its ``Ready`` condition).

Failures are told apart as ``controller.credentials`` does for its Secrets: a read that may pass
(a timeout, a refused connection, HTTP 5xx) keeps the contents last read, and the condition says
so and since when they were read; a refusal (403, 404, a missing Secret or key, an export that
is not FOCUS) is believed at once: the contents stop counting, so a revoked or deleted bill is
never priced from a stale copy, and the condition names the problem and the fix. A failure of
one BillingExport never stops the others (nor the placement loop: ``refresh`` never raises).

Why pyarrow's filesystems read the object store (not boto3): pyarrow already reads the exports
(``accounting.focus``, the finops extra); its ``S3FileSystem`` speaks S3 to AWS and to
S3-compatible stores (MinIO, Ceph, OVH, Scaleway) with no second SDK. An object is downloaded
to a temporary file, read by ``focus.read_export`` like a file on a volume, and deleted.

Credentials: the access key is read from a Secret in the operator's namespace (the chart lets
the operator read only the Secrets it lists, ``finops.exportCredentials.secrets``); nothing of
it reaches a status or an Event. Blocking: call ``refresh`` in a thread.
"""

# pyarrow is imported inside the S3 reader on purpose: it is the finops extra (170 MB).
# ruff: noqa: PLC0415

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import pathlib
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from greenplace import errors
from greenplace.accounting import focus
from greenplace.api import convert, models
from greenplace.audit import credentials as vc
from greenplace.controller import cache as cache_
from greenplace.controller import credentials

__all__ = [
    "CHART_VALUE",
    "UNREACHABLE",
    "BillingExports",
    "Counted",
    "ExportError",
    "Listed",
    "SecretReader",
]

CHART_VALUE = "finops.exportCredentials.secrets"  # the Secrets the chart lets the operator read
# Bounds on every object-store request: a store that does not answer in time is unreachable
# this interval (the contents last read still count), not a stalled reader thread.
_CONNECT_TIMEOUT = 5.0
_REQUEST_TIMEOUT = 30.0
_ATTEMPTS = 2
# The largest object downloaded (it is copied to the operator's temporary directory): 4 GiB
# holds a month of FOCUS rows of a large account; a bigger object is refused, not a full disk.
MAX_OBJECT_BYTES = 4 << 30
# The S3 errors that a retry does not change: the request is refused (credentials, access) or
# its object is not there. Anything else (network, 5xx, throttling) may pass.
_REFUSALS = {
    "ACCESS_DENIED": "AccessDenied",
    "INVALID_ACCESS_KEY_ID": "AccessDenied",
    "SIGNATURE_DOES_NOT_MATCH": "AccessDenied",
    "NO_SUCH_BUCKET": "NotFound",
    "NO_SUCH_KEY": "NotFound",
    "RESOURCE_NOT_FOUND": "NotFound",
}
_FIXES = {
    "AccessDenied": "fix: give the access key of spec.s3.credentialsSecretRef read access "
    "(s3:ListBucket and s3:GetObject) to the bucket",
    "NotFound": "fix: correct spec.s3 (bucket, prefix or keys), or upload the export",
}

# (kind, namespace, name) -> the object's keys, or why it cannot be read (credentials.api_reader).
SecretReader = Callable[[str, str, str], "dict[str, str] | vc.Unverified | credentials.Unreadable"]


@dataclasses.dataclass(frozen=True)
class Listed:
    """One object of an export as listed: a new size or version means read it again."""

    name: str  # a path, or s3://bucket/key
    size: int
    version: str | None  # its modification time


@dataclasses.dataclass(frozen=True)
class Counted:
    """The contents of one BillingExport that count, and what they were read from."""

    name: str
    objects: tuple[Listed, ...]
    export: focus.Export


UNREACHABLE = "SourceUnreachable"  # the one reason that may pass: the contents are kept


class ExportError(errors.GreenplaceError):
    """A BillingExport cannot be read: ``reason`` is its Ready condition's (``UNREACHABLE``
    may pass and keeps the contents last read; any other is believed at once)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Store(Protocol):
    def list(self) -> tuple[Listed, ...]: ...
    def read(self, objects: Sequence[Listed], fmt: focus.Format) -> focus.Export: ...


@dataclasses.dataclass
class _State:
    generation: int
    due: datetime.datetime
    counted: Counted | None = None
    read_at: datetime.datetime | None = None
    ready: tuple[bool, str, str] = (False, "NotRead", "not read yet")


class BillingExports:
    """Each BillingExport's contents, read on its interval (``refresh``, blocking)."""

    def __init__(
        self,
        secrets: SecretReader,
        namespace: str,
        *,
        s3: Callable[..., Any] | None = None,
    ) -> None:
        self._secrets = secrets
        self.namespace = namespace
        self._s3 = s3  # builds the S3 filesystem from its options (default pyarrow's)
        self._states: dict[str, _State] = {}

    def refresh(
        self, sources: Sequence[cache_.CachedBillingExport], now: datetime.datetime
    ) -> None:
        """Read every source that is due (new, changed, or its interval passed)."""
        names = {s.name for s in sources}
        for gone in set(self._states) - names:
            del self._states[gone]
        for source in sources:
            state = self._states.get(source.name)
            if state is None or state.generation != source.generation:
                state = self._states[source.name] = _State(source.generation, now)
            if now >= state.due:
                state.due = now + convert.duration(source.spec.interval)
                self._read(source, state, now)

    def counting(self) -> tuple[Counted, ...]:
        """The contents that count, by BillingExport name."""
        return tuple(s.counted for _, s in sorted(self._states.items()) if s.counted is not None)

    def refused(self) -> tuple[tuple[str, str], ...]:
        """(name, why) of every BillingExport none of whose contents count."""
        return tuple(
            (name, s.ready[2]) for name, s in sorted(self._states.items()) if s.counted is None
        )

    def generation(self, name: str) -> int | None:
        """The generation of BillingExport ``name`` last refreshed (None: never)."""
        state = self._states.get(name)
        return None if state is None else state.generation

    def status(self, name: str) -> tuple[models.BillingExportStatus, tuple[bool, str, str]]:
        """The status of BillingExport ``name`` and its Ready condition (status, reason,
        message); call it after ``refresh`` listed it."""
        state = self._states[name]
        counted = state.counted
        fingerprints = {} if counted is None else focus.fingerprints(counted.export)
        return (
            models.BillingExportStatus(
                observed_generation=state.generation,
                last_read_time=state.read_at,
                next_read_time=state.due,
                objects=None
                if counted is None
                else [models.ExportObjectStatus(**dataclasses.asdict(o)) for o in counted.objects],
                rows=None if counted is None else len(counted.export.charges),
                periods=None
                if counted is None
                else [
                    models.ExportPeriodStatus(
                        period_start=period.start, period_end=period.end, fingerprint=digest
                    )
                    # the newest ones a status may hold (a month each: 85 years)
                    for period, digest in list(fingerprints.items())[-models.MAX_EXPORT_PERIODS :]
                ],
            ),
            state.ready,
        )

    def _read(
        self, source: cache_.CachedBillingExport, state: _State, now: datetime.datetime
    ) -> None:
        try:
            store = self._store(source.spec)
            objects = store.list()
            counted = state.counted
            if counted is None or counted.objects != objects:
                counted = Counted(source.name, objects, store.read(objects, source.spec.format))
        except ExportError as error:
            if error.reason == UNREACHABLE:
                self._unreachable(state, str(error))
            else:
                state.counted = None
                state.ready = (False, error.reason, str(error))
            return
        except focus.FocusError as error:
            state.counted = None
            state.ready = (False, "ExportRefused", str(error))
            return
        except Exception as error:  # a fault of this export is its own problem
            self._unreachable(state, type(error).__name__)
            return
        state.counted, state.read_at = counted, now
        state.ready = (
            True,
            "Read",
            f"{len(objects)} objects, {len(counted.export.charges)} distinct charges",
        )

    @staticmethod
    def _unreachable(state: _State, why: str) -> None:
        kept = (
            "nothing read yet"
            if state.counted is None or state.read_at is None
            else f"the contents read at {state.read_at:%Y-%m-%dT%H:%M:%SZ} still count"
        )
        state.ready = (False, UNREACHABLE, f"{why}; {kept}")

    def _store(self, spec: models.BillingExportSpec) -> _Store:
        if spec.file is not None:
            return _Files(tuple(pathlib.Path(p) for p in spec.file.paths))
        assert spec.s3 is not None  # the model holds exactly one source
        return _S3(spec.s3, self._access_key(spec.s3.credentials_secret_ref), self._s3)

    def _access_key(self, ref: models.S3CredentialsRef) -> tuple[str, str]:
        found = self._secrets("Secret", self.namespace, ref.name)
        where = f"Secret {self.namespace}/{ref.name}"
        if isinstance(found, credentials.Unreadable):
            raise ExportError(UNREACHABLE, found.why.detail)
        if isinstance(found, vc.Unverified):
            raise ExportError(
                "CredentialsMissing",
                f"{found.detail}; fix: create it with keys {ref.access_key_id_key} and "
                f"{ref.secret_access_key_key}, and list it in the chart value {CHART_VALUE}",
            )
        missing = [
            k for k in (ref.access_key_id_key, ref.secret_access_key_key) if not found.get(k)
        ]
        if missing:
            raise ExportError(
                "CredentialsMissing",
                f"{where} has no {' or '.join(missing)} key; fix: add it, or name the keys it "
                "has in spec.s3.credentialsSecretRef",
            )
        return found[ref.access_key_id_key], found[ref.secret_access_key_key]


@dataclasses.dataclass(frozen=True)
class _Files:
    paths: tuple[pathlib.Path, ...]

    def list(self) -> tuple[Listed, ...]:
        out = []
        for path in self.paths:
            try:
                found = path.stat()
            except FileNotFoundError:
                raise ExportError(
                    "NotFound",
                    f"{path}: no such file; fix: mount the volume holding it (the chart's "
                    "finops.exports) or correct spec.file.paths",
                ) from None
            except PermissionError:
                raise ExportError(
                    "AccessDenied", f"{path}: the operator may not read it; fix: its mode"
                ) from None
            except OSError as error:
                raise ExportError(
                    UNREACHABLE, f"{path}: {error.strerror or type(error).__name__}"
                ) from None
            out.append(Listed(str(path), found.st_size, str(found.st_mtime_ns)))
        return tuple(out)

    def read(self, objects: Sequence[Listed], fmt: focus.Format) -> focus.Export:
        return focus.read_export([pathlib.Path(o.name) for o in objects], fmt)


class _S3:
    def __init__(
        self,
        spec: models.S3Export,
        access_key: tuple[str, str],
        build: Callable[..., Any] | None,
    ) -> None:
        try:
            from pyarrow import fs
        except ImportError:  # the finops extra is not installed
            raise ExportError(
                "ExportRefused",
                "reading FOCUS exports needs pyarrow; fix: pip install 'greenplace[finops]'",
            ) from None
        self.spec = spec
        options: dict[str, Any] = {}
        if spec.endpoint is not None:
            url = urllib.parse.urlsplit(spec.endpoint)
            options = {"endpoint_override": url.netloc + url.path.rstrip("/"), "scheme": url.scheme}
        self._fs = (build or fs.S3FileSystem)(
            access_key=access_key[0],
            secret_key=access_key[1],
            region=spec.region,
            connect_timeout=_CONNECT_TIMEOUT,
            request_timeout=_REQUEST_TIMEOUT,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=_ATTEMPTS),
            **options,
        )

    def list(self) -> tuple[Listed, ...]:
        from pyarrow import fs

        bucket = self.spec.bucket
        with _s3_errors():
            if self.spec.keys is not None:
                infos = self._fs.get_file_info([f"{bucket}/{key}" for key in self.spec.keys])
                absent = [i.path for i in infos if i.type != fs.FileType.File]
                if absent:
                    raise ExportError(
                        "NotFound", f"no object s3://{absent[0]}; {_FIXES['NotFound']}"
                    )
            else:
                selector = fs.FileSelector(f"{bucket}/{self.spec.prefix}", recursive=True)
                infos = [i for i in self._fs.get_file_info(selector) if i.type == fs.FileType.File]
        if not infos:
            raise ExportError(
                "NotFound",
                f"no object under s3://{bucket}/{self.spec.prefix}; {_FIXES['NotFound']}",
            )
        if len(infos) > models.MAX_EXPORT_OBJECTS:
            raise ExportError(
                "ExportRefused",
                f"more than {models.MAX_EXPORT_OBJECTS} objects under s3://{bucket}/"
                f"{self.spec.prefix}; fix: a narrower spec.s3.prefix",
            )
        return tuple(
            Listed(f"s3://{i.path}", i.size or 0, None if i.mtime is None else i.mtime.isoformat())
            for i in sorted(infos, key=lambda i: i.path)
        )

    def read(self, objects: Sequence[Listed], fmt: focus.Format) -> focus.Export:
        too_big = [o.name for o in objects if o.size > MAX_OBJECT_BYTES]
        if too_big:
            raise ExportError(
                "ExportRefused",
                f"{too_big[0]} is larger than {MAX_OBJECT_BYTES >> 30} GiB; fix: have the "
                "provider split the export (one object per day)",
            )
        with tempfile.TemporaryDirectory(prefix="greenplace-export-") as directory:
            local: list[pathlib.Path] = []
            for index, listed in enumerate(objects):
                # The object's own name, so that format Auto reads it by its extension.
                path = pathlib.Path(directory) / f"{index}-{listed.name.rsplit('/', 1)[-1]}"
                with _s3_errors(), self._fs.open_input_stream(listed.name[5:]) as stream:
                    path.write_bytes(stream.readall())
                local.append(path)
            try:
                return focus.read_export(local, fmt)
            except focus.FocusError as error:  # name the object, not the temporary file
                message = str(error)
                for path, listed in zip(local, objects, strict=True):
                    message = message.replace(str(path), listed.name)
                raise focus.FocusError(message) from None


@contextlib.contextmanager
def _s3_errors() -> Iterator[None]:
    """pyarrow's S3 errors as a refusal (believed at once) or an unreachable store (may pass)."""
    try:
        yield
    except FileNotFoundError as error:
        raise ExportError("NotFound", f"{_first_line(error)}; {_FIXES['NotFound']}") from None
    except ExportError:
        raise
    except OSError as error:
        text = str(error)
        for code, reason in _REFUSALS.items():
            if f"AWS Error {code}" in text:
                raise ExportError(reason, f"{_first_line(error)}; {_FIXES[reason]}") from None
        raise ExportError(UNREACHABLE, _first_line(error)) from None


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:1024]
