"""How the read commands reach the cluster, with kubectl's flags and kubectl's error manners.

Why this module exists: every read command takes ``--kubeconfig``, ``--context``,
``-n/--namespace``, ``-A/--all-namespaces`` and ``-o``, reads with a timeout, and turns what can
go wrong before an answer (no kubeconfig, an API server that does not answer, a refusal from
the server) into one line (``describe``) instead of a traceback. The Kubernetes client is
imported only when a command connects, so ``--help``, ``--version`` and flag errors stay fast.

Which namespace a command reads: ``-n`` names one; ``-A`` reads all; without either, the
namespace of the kubeconfig's context if it names one (kubectl's rule), else every namespace.
kubectl falls back to ``default`` there; greenplace does not, because its objects live in the
tenants' namespaces (a ``default`` namespace holds none of them) and the first question a
platform engineer asks ("where did the pods go?") spans them. ``docs/cli.md`` says the same.
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Any

from greenplace.cli import output

if TYPE_CHECKING:
    from kubernetes import client

__all__ = ["REQUEST_TIMEOUT", "add_flags", "connect", "describe", "namespace_of"]

REQUEST_TIMEOUT = (5.0, 30.0)  # seconds to connect, seconds to wait for an answer

NAMESPACE_HELP = (
    "read this namespace only (default: the kubeconfig context's namespace if it sets one, "
    "else all namespaces)"
)


def add_flags(parser: argparse.ArgumentParser, cluster_scoped: bool = False) -> None:
    """kubectl's flags for a read command (``cluster_scoped``: -n and -A change nothing, as
    kubectl says of a cluster-scoped kind, and are accepted for the same habits)."""
    scope = " (GpuPools are cluster-scoped: no effect)" if cluster_scoped else ""
    parser.add_argument("-n", "--namespace", help=NAMESPACE_HELP + scope)
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="read every namespace" + scope
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=output.FORMATS,
        help="wide: every column, reasons in full; json, yaml: the rows as data "
        '({"items": [...]}, each with its kind)',
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    parser.add_argument("--context", help="the kubeconfig context to use (default: its current)")


def connect(args: argparse.Namespace) -> client.ApiClient:
    """A client for ``args.kubeconfig`` and ``args.context`` (in a pod without a kubeconfig:
    the pod's service account); ``CliError`` when there is no kubeconfig to read."""
    from kubernetes import client, config

    configuration = client.Configuration()
    configuration.retries = 1  # kubectl does not retry a refused connection either
    path = _kubeconfig(args)
    if path is None:
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config(
        path, context=args.context, client_configuration=configuration
    )


def namespace_of(args: argparse.Namespace) -> str | None:
    """The namespace to read: ``-n``, else none with ``-A``, else the context's (if set)."""
    if getattr(args, "all_namespaces", False):
        return None
    if args.namespace:
        return str(args.namespace)
    return context_namespace(args)


def context_namespace(args: argparse.Namespace) -> str | None:
    """The namespace the kubeconfig's (current or ``--context``) context names, if any."""
    path = _kubeconfig(args)
    if path is None:
        return None
    from kubernetes import config

    try:
        contexts, current = config.list_kube_config_contexts(path)
    except config.ConfigException as error:
        raise output.CliError(f"kubeconfig {path}: {error}") from error
    wanted = args.context or (current or {}).get("name")
    for context in contexts or []:
        if context.get("name") == wanted:
            found = (context.get("context") or {}).get("namespace")
            return str(found) if found else None
    raise output.CliError(f'context "{wanted}" does not exist in {path}')


def _kubeconfig(args: argparse.Namespace) -> str | None:
    """The kubeconfig to read (``None``: in a pod, use its service account)."""
    if args.kubeconfig:
        if not pathlib.Path(args.kubeconfig).is_file():
            raise output.CliError(f"kubeconfig {args.kubeconfig}: no such file")
        return str(args.kubeconfig)
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        if not any(pathlib.Path(p).is_file() for p in listed):
            raise output.CliError(f"KUBECONFIG={os.environ['KUBECONFIG']}: no such file")
        return os.environ["KUBECONFIG"] if len(listed) > 1 else listed[0]
    home = pathlib.Path("~/.kube/config").expanduser()
    if home.is_file():
        return str(home)
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not args.context:
        return None
    raise output.CliError(
        "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config"
    )


_ERRNO = re.compile(r"^.*?(?:\[Errno -?\d+\] )?([^:\]]+)$")


def describe(error: BaseException) -> str | None:
    """One line for a failure reaching or asking the API server, as kubectl words it; None
    for any other error (a bug: its traceback is worth seeing)."""
    if "kubernetes" not in sys.modules:
        return None
    import urllib3
    from kubernetes import client, config

    if isinstance(error, client.ApiException):
        reason, message = str(error.reason or error.status), ""
        try:
            body: Any = json.loads(error.body or "")
        except ValueError:
            body = None
        if isinstance(body, dict):
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
        return f"Error from server ({reason}): {message or f'HTTP {error.status}'}"
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        pool = error.pool
        where = f"{pool.scheme}://{pool.host}:{pool.port}" if pool is not None else error.url
        cause = str(error.reason or error)
        found = _ERRNO.match(cause.splitlines()[0] if cause else "")
        words = (found.group(1) if found else cause).strip().lower() or "no answer"
        return (
            f"error: cannot reach the API server at {where}: {words} (is the cluster up? are "
            "--kubeconfig and --context right?)"
        )
    if isinstance(error, urllib3.exceptions.HTTPError):
        return f"error: the API server did not answer: {error}"
    if isinstance(error, config.ConfigException):
        return f"error: kubeconfig: {error}"
    return None
