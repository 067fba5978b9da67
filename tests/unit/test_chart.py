"""The Helm chart's files: generated CRDs, documented values, and a few renderings.

Why this module exists: the chart's CRDs are generated from the same models as ``crds/``
(``make crds``) and must never drift from them; every value of ``values.yaml`` carries a
comment, because the values file is the chart's user documentation. ``helm template`` (the
devcluster's helm, no cluster) checks values that only change the operator's Deployment (the
credential Secrets of ``signalCredentials.secrets``). The chart on a real control plane is
tested in ``tests/e2e/test_chart.py``.
"""

from __future__ import annotations

import base64
import json
import pathlib
import tomllib
from typing import Any

import pytest
import yaml

from greenplace.api import crdgen
from greenplace.audit import chain, store
from greenplace.cli import main as cli
from greenplace.cli import operate
from greenplace.controller import credentials
from tests.charts import helm_template, operator_pod
from tests.credentials import Certifier

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "greenplace"
PEM_HEADER = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_chart_crds_match_the_models(kind: crdgen.Kind) -> None:
    committed = (ROOT / crdgen.CHART_CRDS / f"{kind.crd_name}.yaml").read_text()
    assert committed == crdgen.render_chart(kind), "chart CRDs drifted: run `make crds`"


def test_chart_crds_are_crds_kept_on_uninstall() -> None:
    for kind in crdgen.KINDS:
        text = crdgen.render_chart(kind)
        assert text.count("{{") == 3, "only the crds.install guard and the labels are template"
        include = '    {{- include "greenplace.labels" . | nindent 4 }}'
        assert include in text.splitlines()
        body = yaml.safe_load("\n".join(x for x in text.splitlines()[2:-1] if x != include))
        assert body == {
            **crdgen.crd(kind),
            "metadata": {
                "name": kind.crd_name,
                "labels": {"app.kubernetes.io/component": "crds"},
                "annotations": {"helm.sh/resource-policy": "keep"},
            },
        }


def test_make_crds_writes_both_copies(tmp_path: pathlib.Path) -> None:
    (tmp_path / crdgen.CHART_CRDS).mkdir(parents=True)
    assert crdgen.main([str(tmp_path / "crds")]) == 0
    for kind in crdgen.KINDS:
        assert (tmp_path / "crds" / f"{kind.crd_name}.yaml").is_file()
        assert (tmp_path / crdgen.CHART_CRDS / f"{kind.crd_name}.yaml").is_file()


def _undocumented(lines: list[str]) -> list[str]:
    """Keys with no comment above them nor above any enclosing key."""
    missing = []
    documented: list[tuple[int, bool]] = []  # (indent, documented) of enclosing keys
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        documented = [(d, ok) for d, ok in documented if d < indent]
        ok = lines[i - 1].strip().startswith("#") or any(ok for _, ok in documented)
        if not ok and not stripped.endswith(":"):
            missing.append(f"line {i + 1}: {stripped}")
        documented.append((indent, ok))
    return missing


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert _undocumented(lines) == []
    assert _undocumented(["a:", "  b: 1"]) == ["line 2: b: 1"]  # the check itself bites


def test_values_schema_is_strict_everywhere() -> None:
    """Every object of values.schema.json closes its keys (maps of strings say so)."""

    def walk(node: object, path: str) -> list[str]:
        open_objects = []
        if isinstance(node, dict):
            closed = node.get("additionalProperties") is False
            if node.get("type") == "object" and "properties" in node and not closed:
                open_objects.append(path)
            for key, value in node.items():
                open_objects += walk(value, f"{path}.{key}")
        return open_objects

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert walk(schema, "$") == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]), "values.yaml and the schema disagree"


# -- signalCredentials.secrets: the Secrets of SignalSource credentials ------------------------

CREDENTIALS_DIR = "/etc/greenplace/credentials"


def test_no_credentials_by_default() -> None:
    pod = operator_pod()
    (container,) = pod["containers"]
    assert not any(a.startswith("--credentials-dir") for a in container["args"])
    # No webhook certificate: gate.mode policy (tests/unit/test_gate_policy_chart.py).
    assert [v["name"] for v in pod["volumes"]] == ["record-key", "ledger-key", "tmp"]
    assert [m["name"] for m in container["volumeMounts"]] == ["record-key", "ledger-key", "tmp"]


def test_the_record_key_is_mounted_and_the_operator_told() -> None:
    pod = operator_pod()
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "record-key"]
    assert volume["secret"] == {"secretName": "gp-greenplace-record-key", "defaultMode": 0o440}
    mount = {m["name"]: m for m in container["volumeMounts"]}["record-key"]
    assert mount == {"name": "record-key", "mountPath": "/etc/greenplace/record-key",
                     "readOnly": True}  # fmt: skip
    assert "--record-key-file=/etc/greenplace/record-key/key" in container["args"]


# -- ledger: the signed placement ledger's key, retention and RBAC (docs/audit.md) ------------


def _rendered(*sets: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = helm_template(*sets, values=values)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_ledger_key_is_generated_mounted_and_the_operator_told(tmp_path: pathlib.Path) -> None:
    docs = _rendered("ledger.retentionSegments=7")
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] ==
                 "gp-greenplace-ledger-key"]  # fmt: skip
    pem = base64.b64decode(secret["data"]["private.pem"])
    key = chain.SigningKey.from_pem(pem, "the chart's ledger key")  # Ed25519, PKCS#8
    pod = operator_pod("ledger.retentionSegments=7")
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ledger-key"]
    assert volume["secret"] == {"secretName": "gp-greenplace-ledger-key", "defaultMode": 0o440}
    mount = {m["name"]: m for m in container["volumeMounts"]}["ledger-key"]
    assert mount == {"name": "ledger-key", "mountPath": "/etc/greenplace/ledger-key",
                     "readOnly": True}  # fmt: skip
    config = operate.config_from(cli.build_parser().parse_args(container["args"]))
    assert config.ledger and config.ledger_retention_segments == 7
    assert config.ledger_key_file == pathlib.Path("/etc/greenplace/ledger-key/private.pem")
    # The operator reads the file as mounted: the same key.
    (tmp_path / "private.pem").write_bytes(pem)
    assert store.load_signing_key(None, "unused", tmp_path / "private.pem").kid == key.kid
    # A new install makes a new key (an upgrade keeps it: tests/e2e/test_chart.py).
    (again,) = [d for d in _rendered() if d["kind"] == "Secret" and d["metadata"]["name"] ==
                "gp-greenplace-ledger-key"]  # fmt: skip
    assert again["data"]["private.pem"] != secret["data"]["private.pem"]


def test_a_named_ledger_key_secret_is_mounted_and_none_generated() -> None:
    docs = _rendered("ledger.keySecret=audit-signing")
    assert not [d for d in docs if d["kind"] == "Secret" and "ledger" in d["metadata"]["name"]]
    (volume,) = [v for v in operator_pod("ledger.keySecret=audit-signing")["volumes"]
                 if v["name"] == "ledger-key"]  # fmt: skip
    assert volume["secret"]["secretName"] == "audit-signing"


def test_the_ledger_off_means_no_key_no_role_and_the_operator_told() -> None:
    docs = _rendered("ledger.enabled=false")
    assert not [d for d in docs if "ledger" in d["metadata"]["name"]]
    (container,) = operator_pod("ledger.enabled=false")["containers"]
    assert "--no-ledger" in container["args"]
    assert not any(a.startswith("--ledger") for a in container["args"])
    assert not operate.config_from(cli.build_parser().parse_args(container["args"])).ledger


def test_the_ledger_role_covers_configmaps_of_the_release_namespace_only() -> None:
    docs = _rendered()
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] ==
               "gp-greenplace-ledger"]  # fmt: skip
    assert role["metadata"]["namespace"] == "greenplace-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                              "verbs": ["get", "list", "create", "update", "delete"]}]  # fmt: skip
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] ==
                  "gp-greenplace-ledger"]  # fmt: skip
    assert binding["roleRef"]["name"] == "gp-greenplace-ledger"


@pytest.mark.parametrize(
    "bad", ["ledger.keySecret=Not_A_Name", "ledger.retentionSegments=0", "ledger.retention=5"]
)
def test_the_schema_refuses_a_bad_ledger_value(bad: str) -> None:
    result = helm_template(bad)
    assert result.returncode != 0 and "schema" in result.stderr, result.stderr


def test_policy_reports_are_off_by_default_and_on_bring_their_rule_and_flag() -> None:
    def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] ==
                   "gp-greenplace"]  # fmt: skip
        return [r for r in role["rules"] if "wgpolicyk8s.io" in r["apiGroups"]]

    assert rules(_rendered()) == []
    assert "--policy-reports" not in operator_pod()["containers"][0]["args"]
    assert rules(_rendered("policyReports.enabled=true")) == [
        {"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"],
         "verbs": ["get", "create", "update"]}
    ]  # fmt: skip
    args = operator_pod("policyReports.enabled=true")["containers"][0]["args"]
    assert operate.config_from(cli.build_parser().parse_args(args)).policy_reports


def test_the_governed_accelerators_reach_the_operator_and_the_policies() -> None:
    args = operator_pod("accelerators.resources={amd.com/gpu}")["containers"][0]["args"]
    assert [a for a in args if a.startswith("--accelerator-")] == [
        "--accelerator-resource=amd.com/gpu",
        "--accelerator-prefix=nvidia.com/mig-",
    ]
    rendered = helm_template("accelerators.resources={amd.com/gpu}").stdout
    policies = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] ==
                "ValidatingAdmissionPolicy"]  # fmt: skip
    governed = {v["name"]: v["expression"] for p in policies for v in p["spec"]["variables"]}
    assert "k in ['amd.com/gpu'] || ['nvidia.com/mig-']" in " ".join(governed["governed"].split())


def test_each_credentials_secret_is_mounted_read_only_and_the_operator_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = operator_pod("signalCredentials.secrets={emaps,watttime.eu}")
    (container,) = pod["containers"]
    assert f"--credentials-dir={CREDENTIALS_DIR}" in container["args"]
    # The operator, given these arguments and the pod's namespace (the chart's POD_NAMESPACE),
    # reads the mounted directory and checks that refs name Secrets of that namespace.
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env["POD_NAMESPACE"] == "metadata.namespace"
    monkeypatch.setenv("POD_NAMESPACE", "greenplace-system")
    config = operate.config_from(cli.build_parser().parse_args(container["args"]))
    assert config.credentials_dir == pathlib.Path(CREDENTIALS_DIR)
    assert config.namespace == "greenplace-system"
    secrets = {v["secret"]["secretName"]: v for v in pod["volumes"] if "secret" in v}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    for name in ("emaps", "watttime.eu"):
        volume = secrets[name]
        # Owner and group read only (the pod's fsGroup is the operator's group); an absent
        # Secret does not stop the pod, whose webhook fails closed.
        assert volume["secret"]["defaultMode"] == 0o440
        assert volume["secret"]["optional"] is True
        mount = mounts[volume["name"]]
        assert mount == {
            "name": volume["name"],
            "mountPath": f"{CREDENTIALS_DIR}/{name}",
            "readOnly": True,
        }
    assert len(secrets) == 4  # and the record and ledger keys (no webhook certificate: policy)
    # Pod Security "restricted" still holds: the credentials do not need a writable root.
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


@pytest.mark.parametrize(
    "bad",
    [
        "signalCredentials.secrets=emaps",  # a string, not a list
        "signalCredentials.secrets={Emaps_Token}",  # not a Secret name
        "signalCredentials.secrets={emaps,emaps}",  # twice
        "signalCredentials.secret={emaps}",  # misspelt key
    ],
)
def test_the_schema_refuses_a_bad_credentials_value(bad: str) -> None:
    result = helm_template(bad)
    assert result.returncode != 0
    assert "signalCredentials" in result.stderr, result.stderr


# -- certificationCredentials: trusted issuers and the Secrets credentials are read from -------


def test_no_trusted_issuer_by_default_means_no_flag_no_mount_and_configmaps_readable() -> None:
    docs = _rendered()
    assert not [d for d in docs if d["metadata"]["name"] == "gp-greenplace-trusted-issuers"]
    assert not any(
        a.startswith("--trusted-issuers") for a in operator_pod()["containers"][0]["args"]
    )
    # The ledger's Role already lets the operator get the release namespace's ConfigMaps ...
    assert not [d for d in docs if d["metadata"]["name"] == "gp-greenplace-credentials"]
    (ledger,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] ==
                 "gp-greenplace-ledger"]  # fmt: skip
    assert "get" in ledger["rules"][0]["verbs"]
    # ... and without the ledger, the credentials' Role does.
    docs = _rendered("ledger.enabled=false")
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] ==
               "gp-greenplace-credentials"]  # fmt: skip
    assert role["metadata"]["namespace"] == "greenplace-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] ==
                  "gp-greenplace-credentials"]  # fmt: skip
    assert binding["roleRef"]["name"] == "gp-greenplace-credentials"


def test_trusted_issuers_reach_the_operator_as_a_mounted_file_it_reads(
    tmp_path: pathlib.Path,
) -> None:
    issuer = Certifier.ed25519("did:web:certifier.example", kid="k1")
    values = {"certificationCredentials": {"trustedIssuers": [issuer.trust()],
                                           "secrets": ["pool-credentials"]}}  # fmt: skip
    docs = _rendered(values=values)
    (configmap,) = [d for d in docs if d["metadata"]["name"] == "gp-greenplace-trusted-issuers"]
    pod = operator_pod(values=values)
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "trusted-issuers"]
    assert volume["configMap"] == {"name": "gp-greenplace-trusted-issuers"}
    mount = {m["name"]: m for m in container["volumeMounts"]}["trusted-issuers"]
    assert mount == {"name": "trusted-issuers", "mountPath": "/etc/greenplace/trusted-issuers",
                     "readOnly": True}  # fmt: skip
    config = operate.config_from(cli.build_parser().parse_args(container["args"]))
    path = config.trusted_issuers_file
    assert path == pathlib.Path("/etc/greenplace/trusted-issuers/issuers.yaml")
    # The operator reads the rendered file as mounted: the issuer is trusted, with its key.
    (tmp_path / path.name).write_text(configmap["data"][path.name])
    trusted = credentials.read_trust(tmp_path / path.name)
    assert [k.kid for k in trusted[issuer.id].keys] == ["k1"]
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] ==
               "gp-greenplace-credentials"]  # fmt: skip
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["pool-credentials"],
            "verbs": ["get"],
        }
    ]


def test_billing_exports_read_only_the_export_secrets_listed() -> None:
    """A BillingExport's access key is read from a Secret the chart lists
    (finops.exportCredentials.secrets), beside the certification credentials' ones; the
    operator watches BillingExports and writes their status only."""
    exported = {"exportCredentials": {"secrets": ["bills", "pool-credentials"]}}
    values = {"certificationCredentials": {"secrets": ["pool-credentials"]}, "finops": exported}
    docs = _rendered(values=values)
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] ==
               "gp-greenplace-credentials"]  # fmt: skip
    (secrets,) = [r for r in role["rules"] if r["resources"] == ["secrets"]]
    assert secrets["resourceNames"] == ["pool-credentials", "bills"]
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"]
                       == "gp-greenplace"]  # fmt: skip
    reads = [r for r in cluster_role["rules"] if "billingexports" in r["resources"]]
    assert [r["verbs"] for r in reads] == [["get", "list", "watch"]]
    assert any("billingexports/status" in r["resources"] and r["verbs"] == ["patch"]
               for r in cluster_role["rules"])  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"trustedIssuers": [{"id": "x"}]},  # no key
        {"trustedIssuers": [{"id": "x", "publicKeys": [{"pem": "not a key"}]}]},
        {
            "trustedIssuers": [
                {"id": "x", "publicKeys": [{"pem": PEM_HEADER, "jwk": {"kty": "OKP"}}]}
            ]
        },
        {"secrets": ["Not_A_Name"]},
        {"trustedIssuer": []},  # misspelt
    ],
    ids=["no-key", "not-pem", "pem-and-jwk", "bad-secret", "misspelt"],
)
def test_the_schema_refuses_a_bad_certification_credentials_value(bad: dict[str, Any]) -> None:
    result = helm_template(values={"certificationCredentials": bad})
    assert result.returncode != 0 and "certificationCredentials" in result.stderr, result.stderr


def test_kueue_enabled_tells_the_operator_and_grants_only_what_the_check_needs() -> None:
    def rendered(*sets: str) -> tuple[list[str], list[dict[str, Any]]]:
        result = helm_template(*sets)
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        (role,) = [d for d in docs if d["kind"] == "ClusterRole"
                   and d["metadata"]["name"] == "gp-greenplace"]  # fmt: skip
        (container,) = operator_pod(*sets)["containers"]
        return container["args"], role["rules"]

    args, rules = rendered()
    assert "--kueue" not in args
    assert not [r for r in rules if "kueue.x-k8s.io" in r["apiGroups"]]
    args, rules = rendered("kueue.enabled=true")
    assert "--kueue" in args
    kueue = [r for r in rules if "kueue.x-k8s.io" in r["apiGroups"]]
    assert {v for r in kueue for v in r["verbs"]} == {"get", "list", "watch", "patch"}
    writes = {res for r in kueue if "patch" in r["verbs"] for res in r["resources"]}
    assert writes == {"workloads/status", "admissionchecks/status", "workloads"}
    assert all(r["verbs"] == ["patch"] for r in kueue if "patch" in r["verbs"])


def test_the_dashboard_configmap_carries_the_shipped_dashboard_for_the_sidecar() -> None:
    def dashboards(*sets: str) -> list[dict[str, Any]]:
        result = helm_template(*sets)
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        return [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith(
            "-dashboard")]  # fmt: skip

    assert dashboards() == [], "off by default"
    (shipped,) = dashboards(
        "grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.annotations.grafana_folder=GPU",
    )  # fmt: skip
    assert shipped["metadata"]["namespace"] == "monitoring"
    assert shipped["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert shipped["metadata"]["annotations"] == {"grafana_folder": "GPU"}
    source = CHART / "dashboards" / "greenplace.json"
    assert json.loads(shipped["data"]["greenplace.json"]) == json.loads(source.read_text())


# -- finops.exports: the FOCUS billing exports the operator reads (docs/finops.md) ------------

FOCUS_DIR = "/etc/greenplace/focus"


def test_focus_exports_are_mounted_read_only_and_each_passed_to_the_operator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = operator_pod(
        "finops.exports.volume.persistentVolumeClaim.claimName=bills",
        "finops.exports.files={2026-12/focus.csv.gz,january.parquet}",
    )
    (container,) = pod["containers"]
    exports = [a for a in container["args"] if a.startswith("--focus-export")]
    assert exports == [f"--focus-export={FOCUS_DIR}/2026-12/focus.csv.gz",
                       f"--focus-export={FOCUS_DIR}/january.parquet"]  # fmt: skip
    # The operator, given these arguments, reads both files.
    monkeypatch.setenv("POD_NAMESPACE", "greenplace-system")
    config = operate.config_from(cli.build_parser().parse_args(container["args"]))
    assert config.focus_exports == (
        pathlib.Path(f"{FOCUS_DIR}/2026-12/focus.csv.gz"),
        pathlib.Path(f"{FOCUS_DIR}/january.parquet"),
    )
    (volume,) = [v for v in pod["volumes"] if v["name"] == "focus-exports"]
    assert volume == {"name": "focus-exports", "persistentVolumeClaim": {"claimName": "bills"}}
    mount = {m["name"]: m for m in container["volumeMounts"]}["focus-exports"]
    assert mount == {"name": "focus-exports", "mountPath": FOCUS_DIR, "readOnly": True}


def test_no_focus_export_by_default_nor_a_volume_without_files() -> None:
    for pod in (operator_pod(), operator_pod("finops.exports.volume.configMap.name=focus")):
        (container,) = pod["containers"]
        assert not any(a.startswith("--focus-export") for a in container["args"])
        assert "focus-exports" not in [v["name"] for v in pod["volumes"]]


def test_focus_export_files_without_a_volume_are_refused_naming_the_value() -> None:
    result = helm_template("finops.exports.files={focus.csv}")
    assert result.returncode != 0
    assert "finops.exports.files needs finops.exports.volume" in result.stderr, result.stderr


VOLUME = "finops.exports.volume.configMap.name=focus"


@pytest.mark.parametrize(
    "bad",
    [
        (VOLUME, "finops.exports.files={../../run/secrets/token.csv}"),  # out of the volume
        (VOLUME, "finops.exports.files={/etc/focus.csv}"),  # absolute
        (VOLUME, "finops.exports.files={focus.txt}"),  # not an export the reader takes
        (VOLUME, "finops.exports.files={a.csv,a.csv}"),  # twice
        (VOLUME, "finops.exports.files=a.csv"),  # a string, not a list
        ("finops.exports.volume.name=mine", "finops.exports.files={a.csv}"),  # the chart's
        (VOLUME, "finops.exports.volume.secret.secretName=b", "finops.exports.files={a.csv}"),
        (VOLUME, "finops.export.files={a.csv}"),  # misspelt key
    ],
)
def test_the_schema_refuses_a_bad_finops_value(bad: tuple[str, ...]) -> None:
    result = helm_template(*bad)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert "finops" in result.stderr, result.stderr


def test_the_image_carries_the_focus_reader() -> None:
    """The Dockerfile installs the finops extra, and that extra is the FOCUS reader's pyarrow:
    without it --focus-export refuses every export (ExportRefused on each claiming pool)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    (install,) = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert '".[finops]"' in install.split(), install
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [r for r in project["optional-dependencies"]["finops"] if r.startswith("pyarrow")]
