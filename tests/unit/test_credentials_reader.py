"""controller.credentials: each referenced credential read from its ConfigMap or Secret (a fake
reader standing in for the API), verified at the cycle's time, each object read at most once per
memory, the trusted issuers' file read again when it changes (a broken one trusts nobody), and
the pool's CertificationsVerified condition naming what does not count."""

from __future__ import annotations

import datetime
import json
import os
import pathlib

from greenplace.api import models
from greenplace.audit import credentials as vc
from greenplace.controller import cache as cache_
from greenplace.controller import credentials
from tests import hostile
from tests.credentials import NOW, Certifier

ISSUER = Certifier.ed25519()
DAY = datetime.timedelta(days=1)


def pool(name: str, *refs: dict[str, object] | None) -> cache_.CachedPool:
    certs = [
        {"name": "SecNumCloud", "level": "3.2", "expires": "2030-01-01"}
        | ({"credential": ref} if ref else {})
        for ref in refs
    ]
    spec = models.GpuPoolSpec.model_validate({**hostile.FULL["GpuPool"], "certifications": certs})
    return cache_.CachedPool(name, 1, spec)


CM = {"configMapKeyRef": {"name": "vc", "key": "a"}}
SECRET = {"secretKeyRef": {"name": "vc", "key": "a"}}


class Objects:
    """What the fake API holds, and every read it served."""

    def __init__(self, held: dict[tuple[str, str], dict[str, str]]) -> None:
        self.held, self.reads = held, []

    def __call__(self, kind: str, namespace: str, name: str) -> dict[str, str] | vc.Unverified:
        self.reads.append((kind, namespace, name))
        found = self.held.get((kind, name))
        return (
            vc.Unverified(vc.Problem.MISSING, f"{kind} {name} not found")
            if found is None
            else found
        )


def trust_file(tmp: pathlib.Path, *issuers: Certifier) -> pathlib.Path:
    path = tmp / "issuers.yaml"
    path.write_text(json.dumps([i.trust() for i in issuers]))
    return path


def test_each_reference_is_verified_by_its_index(tmp_path: pathlib.Path) -> None:
    objects = Objects({("ConfigMap", "vc"): {"a": ISSUER.issue("p")}})
    reader = credentials.Credentials(None, "gp", trust_file(tmp_path, ISSUER), reader=objects)
    checked = reader.read([pool("p", None, CM, SECRET)], NOW)["p"]
    assert sorted(checked) == [1, 2]  # the certification without a credential is not checked
    assert isinstance(checked[1], vc.Verified)
    assert isinstance(checked[2], vc.Unverified) and checked[2].problem is vc.Problem.MISSING
    assert {r[1] for r in objects.reads} == {"gp"}  # read in the operator's namespace only


def test_a_key_absent_from_the_object_is_named(tmp_path: pathlib.Path) -> None:
    objects = Objects({("ConfigMap", "vc"): {"other": "x"}})
    reader = credentials.Credentials(None, "gp", trust_file(tmp_path, ISSUER), reader=objects)
    (result,) = reader.read([pool("p", CM)], NOW)["p"].values()
    assert isinstance(result, vc.Unverified)
    assert result.detail == "ConfigMap gp/vc has no key 'a'"


def test_an_object_is_read_once_per_memory_but_checked_at_every_cycle(
    tmp_path: pathlib.Path,
) -> None:
    token = ISSUER.issue("p", valid_until=NOW + DAY)
    objects = Objects({("ConfigMap", "vc"): {"a": token}})
    reader = credentials.Credentials(
        None, "gp", trust_file(tmp_path, ISSUER), memory=datetime.timedelta(hours=1),
        reader=objects,
    )  # fmt: skip
    pools = [pool("p", CM), pool("q", CM)]
    assert isinstance(reader.read(pools, NOW)["p"][0], vc.Verified)
    later = reader.read(pools, NOW + 2 * DAY)  # the same token, now past its exp
    assert later["p"][0] == vc.Unverified(vc.Problem.EXPIRED, later["p"][0].detail)  # type: ignore[union-attr]
    assert len(objects.reads) == 1
    no_memory = credentials.Credentials(
        None, "gp", trust_file(tmp_path, ISSUER), memory=datetime.timedelta(0), reader=objects
    )
    no_memory.read(pools, NOW)
    assert len(objects.reads) == 3


def test_the_trusted_issuers_file_is_read_again_when_it_changes(tmp_path: pathlib.Path) -> None:
    new = Certifier.ed25519("did:web:new.example")
    objects = Objects({("ConfigMap", "vc"): {"a": new.issue("p")}})
    path = trust_file(tmp_path, ISSUER)
    reader = credentials.Credentials(None, "gp", path, reader=objects)
    (before,) = reader.read([pool("p", CM)], NOW)["p"].values()
    assert isinstance(before, vc.Unverified) and before.problem is vc.Problem.UNTRUSTED_ISSUER
    path.write_text(json.dumps([ISSUER.trust(), new.trust()]))
    os.utime(path, (1, 1))  # a changed file, even within the clock's resolution
    (after,) = reader.read([pool("p", CM)], NOW)["p"].values()
    assert isinstance(after, vc.Verified)


def test_a_broken_trusted_issuers_file_trusts_nobody(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text("- id: did:web:x\n  publicKeys: [{pem: junk}]\n")
    objects = Objects({("ConfigMap", "vc"): {"a": ISSUER.issue("p")}})
    reader = credentials.Credentials(None, "gp", path, reader=objects)
    (result,) = reader.read([pool("p", CM)], NOW)["p"].values()
    assert isinstance(result, vc.Unverified) and result.problem is vc.Problem.UNTRUSTED_ISSUER
    assert "trustedIssuers[0].publicKeys[0]: not a public key" in result.detail


def test_the_condition_names_each_certification_that_does_not_count(
    tmp_path: pathlib.Path,
) -> None:
    objects = Objects({("ConfigMap", "vc"): {"a": ISSUER.issue("p")}})
    reader = credentials.Credentials(None, "gp", trust_file(tmp_path, ISSUER), reader=objects)
    cached = pool("p", CM, SECRET)
    ok, reason, message = credentials.summary(reader.read([cached], NOW)["p"], cached.spec)
    assert (ok, reason) == (False, "CertificationUnverified")
    assert message.startswith("SecNumCloud: credential missing (Secret vc not found)")
    cached = pool("p", CM)
    assert credentials.summary(reader.read([cached], NOW)["p"], cached.spec) == (
        True, "CredentialsVerified", f"verified: SecNumCloud ({ISSUER.id})",
    )  # fmt: skip


def test_explain_reads_back_what_the_status_recorded_for_the_current_generation(
    tmp_path: pathlib.Path,
) -> None:
    """status.certifications round-trips into the same domain certifications (explain from
    the cluster decides as the operator did); a status of an older generation is not used."""
    objects = Objects({("ConfigMap", "vc"): {"a": ISSUER.issue("p")}})
    reader = credentials.Credentials(None, "gp", trust_file(tmp_path, ISSUER), reader=objects)
    cached = pool("p", CM, SECRET)
    checked = credentials.of_pool(cached.spec, reader.read([cached], NOW)["p"])
    status = [e.model_dump(mode="json", by_alias=True, exclude_none=True)
              for e in credentials.to_status(checked, cached.spec)]  # fmt: skip
    body = {"metadata": {"name": "p", "generation": 3},
            "status": {"observedGeneration": 3, "certifications": status}}  # fmt: skip
    back = credentials.recorded([body])["p"]
    assert isinstance(back[0], vc.Verified) and back[0].valid_until == checked[0].valid_until  # type: ignore[union-attr]
    assert isinstance(back[1], vc.Unverified) and back[1].problem is vc.Problem.MISSING
    stale = {**body, "metadata": {"name": "p", "generation": 4}}
    assert credentials.recorded([stale]) == {}


def test_a_read_that_may_pass_keeps_the_last_good_contents(tmp_path: pathlib.Path) -> None:
    """A timeout or HTTP 5xx does not flip a verified pool; with nothing read before, the
    credential does not count; a 404 is believed at once."""
    answers: list[dict[str, str] | vc.Unverified | credentials.Unreadable] = []
    flaky = credentials.Unreadable(vc.Unverified(vc.Problem.MISSING, "ConfigMap gp/vc unreadable"))
    reader = credentials.Credentials(
        None, "gp", trust_file(tmp_path, ISSUER), memory=datetime.timedelta(0),
        reader=lambda *_: answers.pop(0),
    )  # fmt: skip
    pools = [pool("p", CM)]
    answers.append(flaky)
    (first,) = reader.read(pools, NOW)["p"].values()
    assert isinstance(first, vc.Unverified) and first.detail == "ConfigMap gp/vc unreadable"
    answers.extend([{"a": ISSUER.issue("p")}, flaky])
    assert isinstance(reader.read(pools, NOW)["p"][0], vc.Verified)
    assert isinstance(reader.read(pools, NOW)["p"][0], vc.Verified)  # the flaky read: kept
    answers.append(vc.Unverified(vc.Problem.MISSING, "ConfigMap gp/vc not found"))
    gone = reader.read(pools, NOW)["p"][0]
    assert isinstance(gone, vc.Unverified) and gone.detail == "ConfigMap gp/vc not found"
