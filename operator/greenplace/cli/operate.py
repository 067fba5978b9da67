"""``greenplace operate``: run the operator (in a cluster, or beside it for development).

Why this module exists: the container image and ``make run`` start the same operator through
this command. Any number of replicas may run: they elect one leader through a Lease (see
``controller.leadership``), and all of them serve the webhook. In a cluster the Helm chart
owns the gate (a MutatingAdmissionPolicy, or the webhook configuration and its mounted
certificate); outside (``--out-of-cluster``), the operator installs the gate itself as
``--gate`` says (by default the policy on Kubernetes 1.36+), and a webhook it configures is
served with a self-signed certificate at this process.

Every flag that sets an ``OperatorConfig`` field takes its default from that field
(``controller.config``, the one place defaults are written), and its help shows it;
``docs/operator.md`` carries this ``--help`` and a unit test keeps the two equal.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import logging
import os
import pathlib
from typing import Any

import kopf

from greenplace.api import convert, models
from greenplace.cli import output
from greenplace.controller import config as config_
from greenplace.controller import handlers, records, resources, webhook
from greenplace.signals import egress, tracefile

__all__ = ["register"]

DEFERRAL_STEP_RANGE = ("1s", "1h")


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser("operate", help="run the greenplace operator")
    parser.add_argument(
        "--kubeconfig",
        default=_config_default("kubeconfig"),
        help="kubeconfig file (default: in-cluster or $KUBECONFIG)",
    )
    parser.add_argument(
        "--out-of-cluster",
        dest="manage_webhook_configuration",
        action="store_true",
        default=_config_default("manage_webhook_configuration"),
        help="serve the webhook on --webhook-host with a self-signed certificate and point the "
        "MutatingWebhookConfiguration at it (default: the Helm chart owns it)",
    )
    parser.add_argument(
        "--gate",
        choices=config_.GATE_MODES,
        default=_config_default("gate"),
        help="with --out-of-cluster, how pods are gated: a MutatingAdmissionPolicy inside the "
        "API server (policy), the webhook, or auto: policy when the server is 1.36 or newer "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-host",
        default=_config_default("webhook_host"),
        help="the address the API server calls the webhook at (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-listen",
        default=_config_default("webhook_listen"),
        help="the address the webhook binds (default: --webhook-host)",
    )
    parser.add_argument(
        "--webhook-port",
        type=int,
        default=_config_default("webhook_port"),
        help="the webhook's port (default: %(default)s)",
    )
    parser.add_argument(
        "--webhook-cert-dir",
        type=pathlib.Path,
        help="directory with tls.crt, tls.key and ca.crt (in-cluster: the mounted Secret; "
        "default: a self-signed certificate for --webhook-host)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve health on this endpoint, e.g. http://0.0.0.0:8080/healthz (fails when the "
        "placement loop is dead or stuck)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_config_default("metrics_port"),
        help="serve Prometheus /metrics on this port (default: not served)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=_config_default("prometheus_url"),
        help="Prometheus holding DCGM and serving metrics, for EnergyReports without "
        "spec.prometheus.url",
    )
    parser.add_argument(
        "--report-seconds",
        type=float,
        default=_config_default("report_seconds"),
        help="how often EnergyReports are computed (default: %(default)g)",
    )
    parser.add_argument(
        "--credentials-dir",
        type=pathlib.Path,
        default=_config_default("credentials_dir"),
        help="directory of mounted Secrets (<dir>/<secret>/<key>) for SignalSource credentials",
    )
    parser.add_argument(
        tracefile.TRACE_DIR_FLAG,
        dest="trace_directories",
        action="extend",
        type=_paths,
        default=list(_config_default("trace_directories")),
        metavar="DIR[,DIR...]",
        help="a directory Trace SignalSources may read CSV files from (repeat, or separate with "
        "commas); a file that resolves (symlinks, ..) outside all of them is refused "
        f"(default: {_shown(_config_default('trace_directories'))}: trace sources are refused)",
    )
    parser.add_argument(
        "--focus-export",
        dest="focus_exports",
        action="append",
        type=pathlib.Path,
        default=list(_config_default("focus_exports")),
        metavar="FILE",
        help="a FOCUS billing export (CSV or Parquet, e.g. on a mounted volume) whose newest "
        "period prices each GpuPool's GPU-hour in its status.billing (repeat; read again when "
        "it changes; default: none, no pool gets a billed price)",
    )
    parser.add_argument(
        egress.ALLOW_HOSTS_FLAG,
        dest="allow_signal_hosts",
        action="extend",
        type=_host_entries,
        default=list(_config_default("allow_signal_hosts")),
        metavar="CIDR|HOST[,...]",
        help="what HTTP SignalSources may reach besides public addresses: CIDRs or addresses "
        "(10.0.0.0/8, 127.0.0.1), hostnames (prometheus.monitoring) or *.domain (repeat, or "
        "separate with commas; default: "
        f"{_shown(_config_default('allow_signal_hosts'))}: loopback, link-local, private and "
        "cluster-internal addresses and names are refused)",
    )
    parser.add_argument(
        egress.INSECURE_FLAG,
        dest="allow_insecure_signal_http",
        action=argparse.BooleanOptionalAction,
        default=_config_default("allow_insecure_signal_http"),
        help="let SignalSources use plain http:// URLs (otherwise https only)",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE") or _config_default("namespace"),
        help="the operator's own namespace, the only one whose Secrets it can mount: a "
        "credentialsSecretRef elsewhere is reported as such (default: $POD_NAMESPACE; "
        "unset: not checked)",
    )
    parser.add_argument(
        "--identity",
        default=None,
        help="this replica's name in the leader Lease and in Events (default: hostname + suffix)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=_config_default("lease_namespace"),
        help="namespace of the leader-election Lease and of the record-key Secret (default: the "
        f"operator's --namespace, else {config_.FALLBACK_LEASE_NAMESPACE})",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=_config_default("lease_seconds"),
        help="a leader that stops renewing is replaced after this long (default: %(default)g)",
    )
    parser.add_argument(
        "--watch-inactivity-seconds",
        type=float,
        default=_config_default("watch_inactivity_seconds"),
        help="reconnect a watch that carried nothing (not even a bookmark) for this long "
        "(default: %(default)g)",
    )
    parser.add_argument(
        "--relist-seconds",
        type=float,
        default=_config_default("relist_seconds"),
        help="the leader lists every object again this often (catches missed deletions; "
        "default: %(default)g)",
    )
    parser.add_argument(
        "--accelerator-resource",
        action="append",
        metavar="NAME",
        help="an extended resource greenplace governs (repeat; default: "
        f"{_shown(_config_default('accelerators').resources)})",
    )
    parser.add_argument(
        "--accelerator-prefix",
        action="append",
        metavar="PREFIX",
        help="govern every extended resource starting with PREFIX (repeat; default: "
        f"{_shown(_config_default('accelerators').prefixes)})",
    )
    parser.add_argument(
        "--record-key-file",
        type=pathlib.Path,
        default=_config_default("record_key_file"),
        help="file with the key that signs placement records (in-cluster: the mounted Secret; "
        f"default: the Secret {records.KEY_SECRET} of the Lease's namespace, created if "
        "missing)",
    )
    parser.add_argument(
        "--ledger",
        action=argparse.BooleanOptionalAction,
        default=_config_default("ledger"),
        help="append every decision to the signed placement ledger (ConfigMaps "
        "greenplace-ledger-* of the Lease's namespace; docs/audit.md) (default: on)",
    )
    parser.add_argument(
        "--ledger-key-file",
        type=pathlib.Path,
        default=_config_default("ledger_key_file"),
        help="file with the Ed25519 PEM key that signs the ledger (in-cluster: the mounted "
        "Secret; default: the Secret greenplace-ledger-key of the Lease's namespace, created "
        "if missing)",
    )
    parser.add_argument(
        "--ledger-retention",
        dest="ledger_retention_segments",
        type=_at_least_one,
        default=_config_default("ledger_retention_segments"),
        metavar="SEGMENTS",
        help="keep at most this many ledger segments of 512 KiB; older ones are deleted "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--trusted-issuers",
        dest="trusted_issuers_file",
        type=pathlib.Path,
        default=_config_default("trusted_issuers_file"),
        metavar="FILE",
        help="YAML list of the issuers whose certification credentials count, each {id, "
        "publicKeys: [{pem | jwk, kid}]}; read again when it changes (in-cluster: the chart's "
        "certificationCredentials.trustedIssuers; docs/credentials.md; default: nobody)",
    )
    parser.add_argument(
        "--policy-reports",
        action=argparse.BooleanOptionalAction,
        default=_config_default("policy_reports"),
        help="write one wgpolicyk8s.io PolicyReport per governed namespace: each workload's "
        "sovereignty, carbon and budget result (needs the PolicyReport CRD; docs/audit.md) "
        "(default: off)",
    )
    parser.add_argument(
        "--kueue",
        action=argparse.BooleanOptionalAction,
        default=_config_default("kueue"),
        help="answer Kueue's AdmissionChecks of controllerName greenplace.dev/placement "
        "(needs Kueue's CRDs; default: off)",
    )
    parser.add_argument(
        "--multikueue",
        action=argparse.BooleanOptionalAction,
        default=_config_default("multikueue"),
        help="be the manager Kueue's MultiKueue dispatcher (multiKueue.dispatcherName "
        "greenplace.dev/dispatcher): nominate one compliant worker cluster per Workload, "
        "planned over GpuPools with spec.cluster (default: off)",
    )
    parser.add_argument(
        "--kueue-namespace",
        default=_config_default("kueue_namespace"),
        help="Kueue's namespace, where the MultiKueueClusters' kubeconfig Secrets are "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--worker-poll",
        dest="worker_poll_seconds",
        type=float,
        default=_config_default("worker_poll_seconds"),
        metavar="SECONDS",
        help="read each worker's nodes and pods this often (default: %(default)g)",
    )
    parser.add_argument(
        "--worker-ttl",
        dest="worker_ttl_seconds",
        type=float,
        default=_config_default("worker_ttl_seconds"),
        metavar="SECONDS",
        help="a worker read longer ago is stale: its pools count 0 free GPUs "
        "(default: %(default)g)",
    )
    parser.add_argument(
        "--nomination-timeout",
        dest="nomination_timeout_seconds",
        type=float,
        default=_config_default("nomination_timeout_seconds"),
        metavar="SECONDS",
        help="nominate the next best cluster when Kueue has not admitted a Workload in its "
        "nominated one after this long (default: %(default)g)",
    )
    parser.add_argument(
        "--deferral-step",
        type=_deferral_step,
        default=_config_default("deferral_step"),
        metavar="DURATION",
        help="how far apart the later starts are that a deferral weighs, from 1s to 1h "
        f"(default: {_duration_text(_config_default('deferral_step'))})",
    )
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger("greenplace").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # kopf reports every watch event's handler at INFO: too chatty
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it too
    if len(args.focus_exports) > models.MAX_EXPORT_FILES:
        raise output.CliError(
            f"--focus-export is given {len(args.focus_exports)} times, at most "
            f"{models.MAX_EXPORT_FILES} files: list more in BillingExports (docs/finops.md)"
        )
    config = config_from(args)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, config)
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=handlers.settings_for(config),
            clusterwide=True,
            standalone=True,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


def config_from(args: argparse.Namespace) -> config_.OperatorConfig:
    """The operator's configuration from the parsed ``greenplace operate`` flags."""
    certs = None
    if args.webhook_cert_dir:
        d = args.webhook_cert_dir
        certs = webhook.ServingFiles(d / "tls.crt", d / "tls.key", d / "ca.crt")
    return config_.OperatorConfig(
        kubeconfig=args.kubeconfig,
        webhook_host=args.webhook_host,
        webhook_listen=args.webhook_listen,
        webhook_port=args.webhook_port,
        webhook_certs=certs,
        manage_webhook_configuration=args.manage_webhook_configuration,
        gate=args.gate,
        metrics_port=args.metrics_port,
        prometheus_url=args.prometheus_url,
        report_seconds=args.report_seconds,
        credentials_dir=args.credentials_dir,
        trace_directories=tuple(args.trace_directories),
        focus_exports=tuple(args.focus_exports),
        allow_signal_hosts=tuple(args.allow_signal_hosts),
        allow_insecure_signal_http=args.allow_insecure_signal_http,
        namespace=args.namespace,
        lease_namespace=args.lease_namespace,
        lease_seconds=args.lease_seconds,
        watch_inactivity_seconds=args.watch_inactivity_seconds,
        relist_seconds=args.relist_seconds,
        accelerators=resources.Accelerators.given(
            args.accelerator_resource, args.accelerator_prefix
        ),
        record_key_file=args.record_key_file,
        ledger=args.ledger,
        ledger_key_file=args.ledger_key_file,
        ledger_retention_segments=args.ledger_retention_segments,
        policy_reports=args.policy_reports,
        trusted_issuers_file=args.trusted_issuers_file,
        kueue=args.kueue,
        multikueue=args.multikueue,
        kueue_namespace=args.kueue_namespace,
        worker_poll_seconds=args.worker_poll_seconds,
        worker_ttl_seconds=args.worker_ttl_seconds,
        nomination_timeout_seconds=args.nomination_timeout_seconds,
        deferral_step=args.deferral_step,
        **({"identity": args.identity} if args.identity else {}),
    )


def _config_default(name: str) -> Any:
    """The default of ``OperatorConfig.<name>``: the one place defaults are written."""
    (field,) = [f for f in dataclasses.fields(config_.OperatorConfig) if f.name == name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of segments, 1 or more")
    return value


def _deferral_step(text: str) -> datetime.timedelta:
    try:
        return convert.duration(models.check_duration(text, *DEFERRAL_STEP_RANGE))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _duration_text(step: datetime.timedelta) -> str:
    minutes, seconds = divmod(int(step.total_seconds()), 60)
    return f"{minutes}m" if not seconds else f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def _shown(values: Any) -> str:
    return ", ".join(str(v) for v in values) or "none"


def _paths(text: str) -> list[pathlib.Path]:
    return [pathlib.Path(p.strip()) for p in text.split(",") if p.strip()]


def _host_entries(text: str) -> list[str]:
    entries = [e.strip() for e in text.split(",") if e.strip()]
    for entry in entries:
        try:
            egress.parse_entry(entry)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return entries
