"""Which URLs the HTTP signal sources may call: https to public addresses, unless allowed.

Why this module exists: whoever may write a SignalSource chooses the URL the operator fetches
(``spec.sources[].prometheus.url``, the ``url`` override of Electricity Maps and WattTime), and
whoever may write an EnergyReport its ``spec.prometheus.url`` (``controller.reports``). The
operator runs inside the cluster, so without a rule it would fetch, on the author's behalf, the
cloud metadata endpoint (169.254.169.254), the API server, a database on the pod network or its
own loopback, and put what it got into a status. ``EgressPolicy`` is that rule;
the operator builds one from ``--allow-signal-hosts`` and ``--allow-insecure-signal-http``
(chart values ``signals.allowHosts`` and ``signals.allowInsecureHttp``).

Refused, unless the operator's configuration allows it (each raises ``SignalNotAllowedError``,
reason ``SourceNotAllowed``, with a message naming the flag and chart value that allow it):

- a scheme other than https (``http`` only with ``--allow-insecure-signal-http``);
- credentials in the URL: user:password@, or a query parameter whose name looks like a secret
  (token, api_key, password, secret, auth, signature, ...): they belong in a Secret;
- loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10), private or
  cluster-internal (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7) and every other
  address that is not globally routable (0.0.0.0/8, 100.64.0.0/10, multicast, reserved ...);
  IPv4 addresses embedded in IPv6 (``::ffff:a.b.c.d``, 6to4, NAT64) are judged as IPv4;
- names that only mean something inside: ``localhost``, ``*.localhost``, ``*.svc``,
  ``*.cluster.local``, ``*.local``, ``*.internal`` and single-label names (``prometheus``, which
  the pod's DNS search path completes to a Service).

``--allow-signal-hosts`` entries are CIDRs or addresses (``10.0.0.0/8``, ``127.0.0.1``: those
addresses may be connected to), hostnames (``prometheus.monitoring``: that name, whatever it
resolves to) or ``*.example.org`` (any name under it).

Credentials (``check_credentials``): the author of a SignalSource names both a credentials Secret
the operator has mounted and, with a ``url`` override, the host it is sent to. So a provider's
token or password goes only to that provider's own https origin (``https://api.electricitymap.org``,
``https://api.watttime.org``), or to a host ``--allow-signal-hosts`` lists exactly: a hostname
entry or a single address (``127.0.0.1``, ``10.1.2.3/32``). A ``*.domain`` or a wider CIDR lets
sources reach those hosts but not receive credentials there, since a tenant may own a name under
the domain or a pod in the range. Refused: ``SignalNotAllowedError`` before anything is sent.

Two checks, so that what is checked is what is connected to:

1. ``check_url`` judges the URL as written (scheme, credentials, a literal address, the name),
   without DNS: at build time (``controller.feeds``, ``controller.reports``) and again before
   every request, redirects included.
2. At connect time the name is resolved once, every address it resolves to is judged, and the
   connection is made to one of those checked addresses (TLS still verifies the name). A name
   that resolves to a public address when checked and to 127.0.0.1 when connected to (DNS
   rebinding) is therefore refused too. For httpx (Electricity Maps, WattTime) this is a network
   backend under the connection pool (``guard_httpx``); for requests (Prometheus) a connection
   class under the session's adapter (``guard_session``). Both connect directly: proxies from
   ``HTTP(S)_PROXY`` are not used, since through a proxy the address reached cannot be checked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx
import requests
import requests.adapters
import urllib3
from urllib3 import connection as urllib3_connection
from urllib3 import connectionpool, exceptions
from urllib3.util import retry

from greenplace.signals import contract

__all__ = [
    "ALLOW_HOSTS_FLAG",
    "ALLOW_HOSTS_VALUE",
    "INSECURE_FLAG",
    "INSECURE_VALUE",
    "EgressPolicy",
    "parse_entry",
]

logger = logging.getLogger(__name__)

ALLOW_HOSTS_FLAG = "--allow-signal-hosts"
ALLOW_HOSTS_VALUE = "signals.allowHosts"
INSECURE_FLAG = "--allow-insecure-signal-http"
INSECURE_VALUE = "signals.allowInsecureHttp"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Resolve (host, port) to the addresses a connection may use, as text ("192.0.2.1", "::1").
Resolver = Callable[[str, int], Sequence[str]]

_INTERNAL_SUFFIXES = (".localhost", ".svc", ".local", ".internal")
# Query parameter names that carry a credential: a word of the name (api_key, accessToken,
# X-Amz-Signature) or its ending (accesstoken, clientsecret), not any substring ("monkey").
_SECRET_WORDS = frozenset({
    "apikey", "auth", "authorization", "bearer", "cookie", "credential", "credentials", "jwt",
    "key", "pass", "passwd", "password", "pwd", "secret", "session", "sessionid", "sig",
    "signature", "token",
})  # fmt: skip
_SECRET_ENDINGS = ("apikey", "passwd", "password", "secret", "signature", "token")
_UNSAFE_CHARACTERS = re.compile(r"[\s\\\x00-\x1f\x7f]")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_MAX_LOGGED = 1024
_logged: set[str] = set()  # refusals already logged, so a source read every cycle logs once


def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_entry(entry: str) -> Network | str:
    """One ``--allow-signal-hosts`` entry: a network, a hostname or ``*.suffix``; ValueError."""
    text = entry.strip().lower().rstrip(".")
    if not text:
        raise ValueError("an empty entry")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    name = text[2:] if text.startswith("*.") else text
    labels = name.split(".")
    if not all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels):
        raise ValueError(
            f"{entry!r} is neither a CIDR (10.0.0.0/8), an address (127.0.0.1), a hostname "
            "(prometheus.monitoring) nor *.domain"
        ) from None
    return text


@dataclasses.dataclass(frozen=True)
class EgressPolicy:
    """What HTTP signal sources may reach; the default allows https to public addresses only."""

    networks: tuple[Network, ...] = ()
    hosts: tuple[str, ...] = ()  # lower-case names, or "*.suffix"
    allow_http: bool = False
    resolver: Resolver = dataclasses.field(default=_system_resolver, compare=False, repr=False)

    @classmethod
    def parse(
        cls,
        entries: Iterable[str] = (),
        *,
        allow_http: bool = False,
        resolver: Resolver = _system_resolver,
    ) -> EgressPolicy:
        """From ``--allow-signal-hosts`` entries (comma-separated lists accepted); ValueError."""
        networks: list[Network] = []
        hosts: list[str] = []
        for item in entries:
            for entry in filter(str.strip, item.split(",")):
                parsed = parse_entry(entry)
                if isinstance(parsed, str):
                    hosts.append(parsed)
                else:
                    networks.append(parsed)
        return cls(tuple(networks), tuple(hosts), allow_http, resolver)

    # ---------------------------------------------------------------- the URL as written

    def check_url(self, url: str) -> None:
        """Refuse ``url`` unless its scheme, credentials and host are allowed (no DNS here).

        Messages never repeat the URL (it may carry a credential), only its host.
        """
        if _UNSAFE_CHARACTERS.search(url):
            raise contract.SignalNotAllowedError(
                "the URL contains whitespace, a control character or a backslash; write it "
                "plainly (percent-encode what must be in it)"
            )
        try:
            parts = urllib.parse.urlsplit(url)
            _ = parts.port  # only to refuse a bad one
        except ValueError:
            raise contract.SignalNotAllowedError(
                "the URL cannot be parsed (bad port or brackets)"
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http"):
            raise contract.SignalNotAllowedError(
                f"scheme {scheme!r} is not allowed: only https (and http with {INSECURE_FLAG})"
            )
        if scheme == "http" and not self.allow_http:
            raise contract.SignalNotAllowedError(
                f"plain http is not allowed (only https): use https, or start the operator with "
                f"{INSECURE_FLAG} (chart value {INSECURE_VALUE}=true)"
            )
        if "@" in parts.netloc:
            raise contract.SignalNotAllowedError(
                "credentials in the URL (user:password@host) are not allowed: put them in a "
                "Secret and name it with credentialsSecretRef"
            )
        for name, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
            if _looks_secret(name):
                raise contract.SignalNotAllowedError(
                    f"query parameter {name[:40]!r} looks like a credential and is not allowed "
                    "in a URL (the URL is shown in status and logs): put it in a Secret and name "
                    "it with credentialsSecretRef"
                )
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise contract.SignalNotAllowedError("the URL has no host")
        if not host.isascii():
            raise contract.SignalNotAllowedError(
                "the host is not ASCII: write the name in its punycode form (xn--...)"
            )
        self.check_host(host)

    def check_host(self, host: str) -> None:
        """Refuse a literal address that is not allowed, or a name that only means "inside"."""
        host = host.lower().rstrip(".")
        if self._name_allowed(host):
            return
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if address is not None:
            self.check_address(host, address)
            return
        if host == "localhost" or host.endswith(_INTERNAL_SUFFIXES) or "." not in host:
            raise contract.SignalNotAllowedError(
                f"host {host} is a local or cluster-internal name (localhost, *.svc, "
                "*.cluster.local, *.local, *.internal or a single label): signal sources may "
                f"only reach public hosts unless the operator allows it with "
                f"{ALLOW_HOSTS_FLAG}={host} (chart value {ALLOW_HOSTS_VALUE})"
            )

    # ---------------------------------------------------------------- the addresses reached

    def check_address(self, host: str, address: Address | str) -> None:
        """Refuse ``address`` (which ``host`` resolved to) unless public or allowed."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        judged = _embedded_ipv4(ip)
        if any(a in n for a in {ip, judged} for n in self.networks if a.version == n.version):
            return
        if judged.is_global and not judged.is_multicast:
            return
        if judged.is_loopback:
            what = "a loopback address"
        elif judged.is_link_local:
            what = "a link-local address (cloud metadata services live there)"
        elif judged.is_private:
            what = "a private or cluster-internal address"
        else:
            what = "not a public address"
        shown = str(ip) if host == str(ip) else f"{host} resolves to {ip}, which"
        raise contract.SignalNotAllowedError(
            f"{shown} is {what}: signal sources may only reach public addresses unless the "
            f"operator allows it with {ALLOW_HOSTS_FLAG}={judged if judged != ip else ip} or "
            f"a CIDR containing it (chart value {ALLOW_HOSTS_VALUE})"
        )

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses a connection to ``host`` may use: resolved once, every one checked.

        Raises ``socket.gaierror`` when the name does not resolve, ``SignalNotAllowedError``
        (and logs it, once) when any address it resolves to is refused.
        """
        host = host.lower().rstrip(".")
        try:
            self.check_host(host)
            resolved = list(self.resolver(host, port))
            if self._name_allowed(host):
                return resolved
            for address in resolved:
                self.check_address(host, address)
        except contract.SignalNotAllowedError as error:
            _log_once(f"refused a signal connection to {host}:{port}: {error}")
            raise
        if not resolved:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} resolves to no address")
        return resolved

    def check_credentials(self, url: str, default_url: str) -> None:
        """Refuse to send credentials to ``url`` unless it is ``default_url``'s https origin
        (scheme, host and port) or its host is listed exactly (a hostname or one address).

        ``url`` has passed ``check_url``; the message names its host, never the URL.
        """
        parts, own = urllib.parse.urlsplit(url), urllib.parse.urlsplit(default_url)
        host = (parts.hostname or "").rstrip(".")
        if own.scheme == "https" and _origin(parts) == _origin(own):
            return
        if host in self.hosts and not host.startswith("*."):  # an exact name entry
            return
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            judged = {ip, _embedded_ipv4(ip)}
            if any(n.num_addresses == 1 and n.network_address in judged for n in self.networks):
                return
        provider = own.hostname or default_url
        raise contract.SignalNotAllowedError(
            f"credentials (credentialsSecretRef) are sent only to https://{provider} or to a "
            f"host the operator lists exactly, and {host} is not listed: remove the url "
            f"override to use https://{provider}, remove credentialsSecretRef, or have the "
            f"operator started with {ALLOW_HOSTS_FLAG}={host} (chart value {ALLOW_HOSTS_VALUE}; "
            "a *.domain or CIDR range entry lets a source reach a host, not receive credentials "
            "there)"
        )

    def _name_allowed(self, host: str) -> bool:
        return any(
            host.endswith(entry[1:]) if entry.startswith("*.") else host == entry
            for entry in self.hosts
        )

    # ---------------------------------------------------------------- the HTTP clients

    def guard_httpx(self, inner: httpx.BaseTransport | None = None) -> httpx.BaseTransport:
        """A transport checking every request's URL; connecting only to checked addresses.

        With ``inner`` (a test's ``MockTransport``), only the URLs are checked: nothing connects.
        """
        return _CheckedTransport(self, inner or _GuardedHttpxTransport(self))

    def guard_session(self, session: requests.Session, *prefixes: str) -> None:
        """Make ``session`` check every request (redirects too) and connect only to checked
        addresses, with no retries, mounted on http://, https:// and ``prefixes``."""
        adapter = _GuardedAdapter(self)
        for prefix in ("http://", "https://", *prefixes):
            session.mount(prefix, adapter)


def _looks_secret(name: str) -> bool:
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_ENDINGS) for w in words if w)


def _origin(parts: urllib.parse.SplitResult) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port made explicit."""
    scheme = parts.scheme.lower()
    port = parts.port or {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").rstrip("."), port


def _embedded_ipv4(ip: Address) -> Address:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else ``ip`` itself."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _log_once(message: str) -> None:
    if message in _logged:
        return
    if len(_logged) >= _MAX_LOGGED:
        _logged.clear()
    _logged.add(message)
    logger.warning("%s", message)


# ---------------------------------------------------------------- httpx / httpcore


class _CheckedTransport(httpx.BaseTransport):
    def __init__(self, policy: EgressPolicy, inner: httpx.BaseTransport) -> None:
        self._policy = policy
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._policy.check_url(str(request.url))
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the policy accepts."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._policy.addresses(host, port)
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        failure: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None  # addresses() never returns an empty list
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise contract.SignalNotAllowedError("signal sources may not use Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedHttpxTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool uses ``_GuardedBackend`` and no proxy."""

    def __init__(self, policy: EgressPolicy) -> None:
        super().__init__()
        # httpx has no public hook for the network backend: replace the pool it built with the
        # same one over the guarded backend (tests/unit/test_signals_access.py proves it is
        # used, so an httpx upgrade that changes this fails there).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=10,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(policy),
        )


# ---------------------------------------------------------------- requests / urllib3


def _connection_classes(
    policy: EgressPolicy,
) -> tuple[type[connectionpool.HTTPConnectionPool], type[connectionpool.HTTPSConnectionPool]]:
    def new_conn(connection: Any, connect: Callable[[], Any]) -> Any:
        host = connection._dns_host
        try:
            addresses = policy.addresses(host, connection.port)
        except socket.gaierror as error:
            raise exceptions.NameResolutionError(connection.host, connection, error) from error
        failure: Exception | None = None
        for address in addresses:
            connection._dns_host = address  # connect there; TLS still checks connection.host
            try:
                return connect()
            except (exceptions.NewConnectionError, exceptions.ConnectTimeoutError) as error:
                failure = error
            finally:
                connection._dns_host = host
        assert failure is not None
        raise failure

    class Http(urllib3_connection.HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock: socket.socket = new_conn(self, super()._new_conn)
            return sock

    class Https(urllib3_connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock: socket.socket = new_conn(self, super()._new_conn)
            return sock

    class HttpPool(connectionpool.HTTPConnectionPool):
        ConnectionCls = Http

    class HttpsPool(connectionpool.HTTPSConnectionPool):
        ConnectionCls = Https

    return HttpPool, HttpsPool


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy
        self._pools = _connection_classes(policy)
        super().__init__(max_retries=retry.Retry(total=0, connect=0, read=0, status=0))

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        manager: urllib3.PoolManager = self.poolmanager
        manager.pool_classes_by_scheme = {"http": self._pools[0], "https": self._pools[1]}

    def send(  # noqa: PLR0917  # the signature of HTTPAdapter.send
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        self._policy.check_url(request.url or "")
        # Connect directly (proxies=None): through a proxy, the address reached is unknown.
        return super().send(request, stream, timeout, verify, cert, proxies=None)
