"""How one operator process runs: every setting, and the one place each default is written.

Why this module exists: the same settings reach the operator from ``greenplace operate``'s flags
(``cli.operate``, whose defaults and ``--help`` are read from here), from the Helm chart (which
passes flags) and from tests (which build an ``OperatorConfig`` directly). Writing a default
twice lets them drift, so each is written once, here; a unit test checks the flags and
``docs/operator.md`` against these fields.

Rules that combine settings live here too, as properties, so that every caller applies them
the same way:

- The leader-election Lease (and the Secret holding the record-signing key, the placement
  ledger with its key, and the certification credentials GpuPools reference) lives in
  ``lease_namespace`` when it is given, else in the operator's own ``namespace``, else in
  ``default``. The operator's own namespace is where the chart's Role lets it write Leases and
  Secrets, and where nobody but the platform team creates objects; ``default`` only serves an
  operator run outside a cluster, with the user's own credentials, that does not know it.
- The webhook listens on ``webhook_listen`` when given, else on ``webhook_host``, the address
  the API server calls.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import socket
import uuid

from greenplace.controller import resources, webhook
from greenplace.domain import model

__all__ = ["FALLBACK_LEASE_NAMESPACE", "GATE_MODES", "OperatorConfig"]

# Where the Lease lives when neither lease_namespace nor the operator's namespace is known.
FALLBACK_LEASE_NAMESPACE = "default"
# What --gate accepts (the chart's gate.mode has no "auto": helm cannot know the server then).
GATE_MODES = ("auto", "policy", "webhook")


def _new_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """How this operator process runs (each field's default is the only one)."""

    kubeconfig: str | None = None  # None: in-cluster, else $KUBECONFIG or ~/.kube/config
    webhook_host: str = "127.0.0.1"  # the address the API server calls
    webhook_listen: str | None = None  # the address to bind (None: webhook_host)
    webhook_port: int = 9443
    webhook_certs: webhook.ServingFiles | None = None  # None: self-signed for webhook_host
    # Point the MutatingWebhookConfiguration at this process (the CLI's --out-of-cluster, the
    # integration tests); by default the Helm chart owns it.
    manage_webhook_configuration: bool = False
    # How an out-of-cluster operator gates pods: "policy" (a MutatingAdmissionPolicy inside the
    # API server, controller.gatepolicy), "webhook", or "auto": policy on Kubernetes 1.36+.
    gate: str = "auto"
    metrics_port: int | None = None  # serve /metrics on 0.0.0.0:PORT when set
    resync_seconds: float = 30.0  # the placement loop runs at least this often
    debounce_seconds: float = 0.2  # a burst has settled once this long passes without a change
    settle_max_seconds: float = 1.0  # ... but a cycle never waits longer than this for it
    prometheus_url: str | None = None  # EnergyReports without spec.prometheus use this
    report_seconds: float = 60.0  # how often every EnergyReport is recomputed
    credentials_dir: pathlib.Path | None = None  # mounted Secrets of the SignalSources
    namespace: str | None = None  # the operator's own (None: unknown, e.g. out of cluster)
    signal_memory_seconds: float = 30.0  # each SignalSource subject is read at most this often
    # Trace SignalSources read files only inside these directories; none: trace sources refused.
    trace_directories: tuple[pathlib.Path, ...] = ()
    # FOCUS billing exports (a mounted volume) the pools' effective prices are read from.
    focus_exports: tuple[pathlib.Path, ...] = ()
    # What HTTP SignalSources may reach besides https to public addresses: CIDRs, addresses,
    # hostnames or *.domain (signals.egress); loopback, private and link-local need an entry.
    allow_signal_hosts: tuple[str, ...] = ()
    allow_insecure_signal_http: bool = False  # http:// SignalSource URLs allowed (else https only)
    # This replica's name in the Lease and in Events: the hostname and a random suffix.
    identity: str = dataclasses.field(default_factory=_new_identity)
    # Where the leader-election Lease lives (None: see lease_namespace_in_use).
    lease_namespace: str | None = None
    lease_seconds: float = 15.0  # a crashed leader is replaced after this long
    watch_inactivity_seconds: float = 70.0  # a watch silent this long is reconnected
    relist_seconds: float = 300.0  # the leader lists everything again this often
    # The accelerator resources governed: gated, checked by admission, counted as capacity.
    accelerators: resources.Accelerators = dataclasses.field(default_factory=resources.Accelerators)
    # File holding the key that signs placement records (the chart mounts a Secret); None:
    # read or create the Secret records.KEY_SECRET in lease_namespace_in_use through the API.
    record_key_file: pathlib.Path | None = None
    # The signed placement ledger (docs/audit.md): segments ConfigMaps greenplace-ledger-* in
    # lease_namespace_in_use, at most ledger_retention_segments of them (512 KiB each), signed
    # by the Ed25519 key in ledger_key_file (the chart mounts a Secret); None: read or create
    # the Secret greenplace-ledger-key there through the API.
    ledger: bool = True
    ledger_key_file: pathlib.Path | None = None
    ledger_retention_segments: int = 100
    # The issuers whose certification credentials are trusted (controller.credentials; the
    # chart mounts certificationCredentials.trustedIssuers); None: nobody, so a certification
    # that references a credential never counts. The credentials are read in
    # lease_namespace_in_use (the operator's own namespace in a cluster).
    trusted_issuers_file: pathlib.Path | None = None
    # One wgpolicyk8s.io PolicyReport per governed namespace (controller.policyreports; needs the
    # Policy WG's CRD, which Kyverno or Policy Reporter install).
    policy_reports: bool = False
    # Answer Kueue's AdmissionChecks whose controllerName is greenplace.dev/placement (needs
    # Kueue's CRDs; controller.kueue).
    kueue: bool = False
    # Dispatch Kueue Workloads to MultiKueue worker clusters as the manager Kueue's external
    # dispatcher (multiKueue.dispatcherName greenplace.dev/dispatcher; controller.dispatch).
    # Reads Kueue's objects (as ``kueue`` does) and the workers' nodes and pods.
    multikueue: bool = False
    kueue_namespace: str = "kueue-system"  # where Kueue reads MultiKueue kubeconfig Secrets
    worker_poll_seconds: float = 15.0  # each worker is read this often
    worker_ttl_seconds: float = 60.0  # a worker read longer ago than this is stale
    # A nomination Kueue has not admitted in this long is replaced by the next best cluster.
    nomination_timeout_seconds: float = 300.0
    # How far apart the later starts are that a deferral weighs (finer for short jobs or 5- to
    # 15-minute grid forecasts; coarser searches a week faster).
    deferral_step: datetime.timedelta = model.DEFAULT_DEFERRAL_STEP

    @property
    def lease_namespace_in_use(self) -> str:
        """Where the Lease and the record-key Secret live (the rule in the module docstring)."""
        return self.lease_namespace or self.namespace or FALLBACK_LEASE_NAMESPACE

    @property
    def listen_address(self) -> str:
        """The address the webhook server binds: ``webhook_listen``, else ``webhook_host``."""
        return self.webhook_listen or self.webhook_host

    @property
    def stale_after_seconds(self) -> float:
        """A loop that has not finished an iteration for this long is reported dead."""
        return 3 * self.resync_seconds + 30

    @property
    def watch_stale_seconds(self) -> float:
        """No Lease event through the watch for this long: the watches are reported dead.

        Someone writes the Lease every ``lease_seconds`` at most (the leader renews it, or a
        standby takes it over); a stalled watch is reconnected after the inactivity timeout and
        then replays what it missed. Beyond both, events are not arriving.
        """
        return self.watch_inactivity_seconds + 2 * self.lease_seconds + 30
