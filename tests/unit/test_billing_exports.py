"""BillingExports (``controller.exports``): read on their interval, a transient failure keeps
the contents last read, a refusal is believed at once, one bad export never stops another,
and the API models refuse bad specs with a message naming the field and the fix.

The object store is pyarrow's local filesystem behind the S3 filesystem's factory (the
operator's own ``_S3`` code lists and reads it), wrapped to fail on demand as a store does
(pyarrow raises OSError with the AWS error code); tests/integration/test_billing_exports.py
reads a real MinIO.
"""

from __future__ import annotations

import datetime
import pathlib
import re
from typing import Any

import pydantic
import pytest
from pyarrow import fs

from greenplace.api import models
from greenplace.audit import credentials as vc
from greenplace.controller import cache as cache_
from greenplace.controller import credentials, exports
from tests import hostile

EXPORT = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus" / "example-fleet.csv"
NOW = datetime.datetime(2027, 1, 5, tzinfo=datetime.UTC)
NS = "greenplace-system"
KEYS = {"accessKeyId": "AK", "secretAccessKey": "SK"}


class Store:
    """The bucket ``bills`` in a directory, failing with ``error`` while it is set."""

    def __init__(self, root: pathlib.Path) -> None:
        (root / "bills" / "focus").mkdir(parents=True)
        self.root = root
        self.error: OSError | None = None
        self.broken: set[str] = set()  # buckets whose listing raises what no store should
        self.built: list[dict[str, Any]] = []

    def put(self, name: str, text: str) -> None:
        (self.root / "bills" / "focus" / name).write_text(text)

    def __call__(self, **options: Any) -> Any:
        self.built.append(options)
        inner = fs.SubTreeFileSystem(str(self.root), fs.LocalFileSystem())
        store = self

        class Failing:
            def get_file_info(self, what: Any) -> Any:
                if store.error is not None:
                    raise store.error
                if getattr(what, "base_dir", "").split("/")[0] in store.broken:
                    raise RuntimeError("a fault of the filesystem itself")
                return inner.get_file_info(what)

            def open_input_stream(self, path: str) -> Any:
                if store.error is not None:
                    raise store.error
                return inner.open_input_stream(path)

        return Failing()


def _spec(**s3: Any) -> models.BillingExportSpec:
    return models.BillingExportSpec.model_validate({
        "interval": "10m",
        "s3": {"bucket": "bills", "prefix": "focus", "credentialsSecretRef": {"name": "b"},
               **s3},
    })  # fmt: skip


def _reader(store: Store, secrets: dict[str, Any] | None = None) -> exports.BillingExports:
    found = {"b": KEYS} if secrets is None else secrets

    def secret(kind: str, namespace: str, name: str) -> Any:
        missing = vc.Unverified(vc.Problem.MISSING, f"Secret {NS}/{name} not found")
        return found.get(name) or missing

    return exports.BillingExports(secret, NS, s3=store)


def _one(
    reader: exports.BillingExports,
    spec: models.BillingExportSpec,
    at: datetime.datetime,
    name: str = "bills",
) -> tuple[models.BillingExportStatus, tuple[bool, str, str]]:
    reader.refresh([cache_.CachedBillingExport(name, 1, spec)], at)
    return reader.status(name)


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Store:
    found = Store(tmp_path / "store")
    found.put("2026-12.csv", EXPORT.read_text())
    return found


def test_read_on_its_interval_and_again_when_an_object_changed(store: Store) -> None:
    reader, spec = _reader(store), _spec()
    status, ready = _one(reader, spec, NOW)
    assert ready == (True, "Read", "1 objects, 21 distinct charges")
    assert status.rows == 21 and status.next_read_time == NOW + datetime.timedelta(minutes=10)
    assert [p.period_start.month for p in status.periods or ()] == [11, 12]
    lines = EXPORT.read_text().splitlines(keepends=True)
    store.put("2026-12.csv", "".join(lines[:4]))  # re-issued: three rows
    assert _one(reader, spec, NOW + datetime.timedelta(minutes=9))[0].rows == 21  # not due
    assert _one(reader, spec, NOW + datetime.timedelta(minutes=10))[0].rows == 3


def test_a_transient_failure_keeps_the_contents_last_read(store: Store) -> None:
    reader, spec = _reader(store), _spec()
    _one(reader, spec, NOW)
    store.error = OSError("AWS Error NETWORK_CONNECTION during ListObjectsV2 operation: refused")
    status, ready = _one(reader, spec, NOW + datetime.timedelta(minutes=10))
    assert ready[:2] == (False, "SourceUnreachable")
    assert ready[2].endswith("; the contents read at 2027-01-05T00:00:00Z still count")
    assert status.rows == 21 and [c.name for c in reader.counting()] == ["bills"]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("ACCESS_DENIED", "AccessDenied"),
        ("SIGNATURE_DOES_NOT_MATCH", "AccessDenied"),
        ("NO_SUCH_BUCKET", "NotFound"),
    ],
)
def test_a_refusal_is_believed_at_once(store: Store, code: str, reason: str) -> None:
    reader, spec = _reader(store), _spec()
    _one(reader, spec, NOW)
    store.error = OSError(f"AWS Error {code} during ListObjectsV2 operation: no")
    status, ready = _one(reader, spec, NOW + datetime.timedelta(minutes=10))
    assert ready[:2] == (False, reason) and "fix: " in ready[2]
    assert status.rows is None and status.objects is None and reader.counting() == ()


def test_a_missing_secret_or_key_names_the_fix(store: Store) -> None:
    _, ready = _one(_reader(store, {}), _spec(), NOW)
    assert ready[:2] == (False, "CredentialsMissing")
    assert ready[2].startswith(f"Secret {NS}/b not found; fix: create it with keys accessKeyId")
    assert exports.CHART_VALUE in ready[2]
    _, ready = _one(_reader(store, {"b": {"accessKeyId": "AK"}}), _spec(), NOW)
    assert ready[2].startswith(f"Secret {NS}/b has no secretAccessKey key; fix:")


def test_an_unreadable_secret_keeps_the_contents(store: Store) -> None:
    secrets: dict[str, Any] = {"b": KEYS}
    reader, spec = _reader(store, secrets), _spec()
    _one(reader, spec, NOW)
    secrets["b"] = credentials.Unreadable(vc.Unverified(vc.Problem.MISSING, "HTTP 503"))
    _, ready = _one(reader, spec, NOW + datetime.timedelta(minutes=10))
    assert ready[:2] == (False, "SourceUnreachable") and len(reader.counting()) == 1


def test_one_bad_export_does_not_stop_another(store: Store, tmp_path: pathlib.Path) -> None:
    reader = _reader(store)
    bad = _spec(credentialsSecretRef={"name": "absent"})
    files = models.BillingExportSpec(file=models.BillingFiles(paths=[str(tmp_path / "no.csv")]))
    sources = [cache_.CachedBillingExport(n, 1, s)
               for n, s in (("a-bad", bad), ("b-good", _spec()), ("c-file", files))]  # fmt: skip
    reader.refresh(sources, NOW)
    assert [c.name for c in reader.counting()] == ["b-good"]
    assert reader.status("a-bad")[1][1] == "CredentialsMissing"
    assert reader.status("c-file")[1][:2] == (False, "NotFound")
    assert [name for name, _ in reader.refused()] == ["a-bad", "c-file"]


def test_an_unexpected_fault_is_that_exports_problem_only(store: Store) -> None:
    """Whatever one export's reading raises, the others are read and nothing escapes."""
    store.broken.add("other")
    (store.root / "other").mkdir()
    reader = _reader(store)
    sources = [cache_.CachedBillingExport("a-other", 1, _spec(bucket="other")),
               cache_.CachedBillingExport("b-good", 1, _spec())]  # fmt: skip
    reader.refresh(sources, NOW)
    assert reader.status("a-other")[1] == (
        False, "SourceUnreachable", "RuntimeError; nothing read yet"
    )  # fmt: skip
    assert [c.name for c in reader.counting()] == ["b-good"]


def test_an_export_that_is_not_focus_is_refused_naming_the_object(store: Store) -> None:
    store.put("2026-12.csv", "a,b\n1,2\n")
    _, ready = _one(_reader(store), _spec(), NOW)
    assert ready[:2] == (False, "ExportRefused")
    assert ready[2].startswith("s3://bills/focus/2026-12.csv: no BilledCost")


def test_the_endpoint_and_region_reach_the_store(store: Store) -> None:
    _one(_reader(store), _spec(endpoint="http://127.0.0.1:9000", region="gra"), NOW)
    (options,) = store.built
    assert (options["endpoint_override"], options["scheme"], options["region"]) == (
        "127.0.0.1:9000", "http", "gra"
    )  # fmt: skip
    assert (options["access_key"], options["secret_key"]) == ("AK", "SK")


@pytest.mark.parametrize(
    ("spec", "message"), hostile.BAD_BILLING_EXPORTS.values(), ids=hostile.BAD_BILLING_EXPORTS
)
def test_a_bad_spec_is_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        models.BillingExportSpec.model_validate(spec)


def test_the_examples_are_valid_billing_exports() -> None:
    """examples/billingexport.yaml (docs/finops.md) parses with the operator's model."""
    import yaml  # noqa: PLC0415

    path = pathlib.Path(__file__).resolve().parents[2] / "examples" / "billingexport.yaml"
    documents = list(yaml.safe_load_all(path.read_text()))
    specs = [models.BillingExportSpec.model_validate(d["spec"]) for d in documents]
    assert [s.s3 is not None for s in specs] == [True, False]


def test_the_status_holds_the_newest_periods_only(store: Store) -> None:
    """An export of more billing periods than a status may hold shows the newest ones (the
    status write would be refused otherwise), and counts all of them."""
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    header, row = list(csv.reader(io.StringIO(EXPORT.read_text())))[:2]
    rows = []
    for month in range(models.MAX_EXPORT_PERIODS + 2):
        start = datetime.datetime(2000 + month // 12, month % 12 + 1, 1, tzinfo=datetime.UTC)
        end = (start + datetime.timedelta(days=32)).replace(day=1)
        values = dict(zip(header, row, strict=True))
        values |= {"BillingPeriodStart": f"{start:%Y-%m-%dT%H:%M:%SZ}",
                   "BillingPeriodEnd": f"{end:%Y-%m-%dT%H:%M:%SZ}"}  # fmt: skip
        rows.append(values)
    text = io.StringIO()
    writer = csv.DictWriter(text, header)
    writer.writeheader()
    writer.writerows(rows)
    store.put("2026-12.csv", text.getvalue())
    status, ready = _one(_reader(store), _spec(), NOW)
    assert ready[0] and status.rows == models.MAX_EXPORT_PERIODS + 2
    periods = status.periods or []
    assert len(periods) == models.MAX_EXPORT_PERIODS
    assert periods[-1].period_start.year == 2000 + (models.MAX_EXPORT_PERIODS + 1) // 12


def test_two_exports_holding_the_same_rows_count_them_once(tmp_path: pathlib.Path) -> None:
    """The contents of every BillingExport are merged, each distinct charge once: the same
    rows in a bucket and on a volume price a pool as one copy does."""
    from greenplace.cli import finops  # noqa: PLC0415
    from greenplace.controller import billing  # noqa: PLC0415

    pools = tuple(
        cache_.CachedPool(name, 1, spec)
        for name, spec in finops._pools_file(EXPORT.parent / "pools.yaml")
    )
    copy = tmp_path / "copy.csv"
    copy.write_text(EXPORT.read_text())
    store = Store(tmp_path / "store")
    store.put("2026-12.csv", EXPORT.read_text())
    sources = [
        cache_.CachedBillingExport("bucket", 1, _spec()),
        cache_.CachedBillingExport(
            "volume", 1, models.BillingExportSpec(file=models.BillingFiles(paths=[str(copy)]))
        ),
    ]
    priced = billing.BillingPrices(_reader(store)).prices(pools, sources, NOW)
    assert priced is not None
    paris = priced["paris-h100"].status
    assert paris is not None and paris.gpu_hours == 272  # (10 + 24) x 8, not twice that
    assert paris.effective_per_gpu_hour == round((180.00 + 312.00) / 272, 6)
