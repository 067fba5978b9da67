"""What a SignalSource may read and reach: trace files in the trace directories, https to public
addresses, anything more only when the operator's configuration allows it.

A hostile SignalSource author must not make the operator read ``/etc/shadow`` into a status, nor
fetch the cloud metadata endpoint or the operator's own loopback. Each refused path is checked
here (outside the directory, a symlink escape, ``..``, a secret file, http, credentials in the
URL, every private range, a name that resolves to loopback, a redirect, a rebinding name), as
are the allowed ones, and that a refusal is a ``SourceNotAllowed`` reading of that source only:
the other sources of the chain and the other SignalSources keep their readings.
"""

from __future__ import annotations

import datetime
import http.server
import logging
import os
import pathlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
import requests

from greenplace.api import models
from greenplace.cli import main as cli
from greenplace.cli import operate
from greenplace.controller import cache, feeds, handlers
from greenplace.signals import contract, egress, electricitymaps, httpjson, promql, tracefile
from tests.providers import NOW, mount_secret, serve

R = contract.SignalReason
FR = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "FR")
SECRET = "root:$6$Zm9vYmFy$hunter2hunter2:19000:0:99999:7:::"
TRACE = "Time,gCO2e/kWh\n2026-03-01 00:00:00,41.0\n2026-03-01 11:30:00,43.0\n"  # NOW: 12:00


# ---------------------------------------------------------------- trace files


@pytest.fixture
def traces(tmp_path: pathlib.Path) -> pathlib.Path:
    allowed = tmp_path / "traces"
    allowed.mkdir()
    (allowed / "fr.csv").write_text(TRACE)
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "shadow").write_text(f"{SECRET}\n{SECRET}\n")
    (outside / "fr.csv").write_text(TRACE)  # well-formed, yet outside: refused all the same
    return allowed


def refused_trace(path: str | pathlib.Path, within: Sequence[pathlib.Path]) -> str:
    with pytest.raises(contract.SignalNotAllowedError) as refused:
        tracefile.load_csv(pathlib.Path(path), within=within)
    message = str(refused.value)
    assert SECRET not in message and "hunter2" not in message
    return message


@pytest.mark.parametrize(
    "path",
    [
        "{root}/etc/fr.csv",  # a file outside the directory
        "{root}/etc/shadow",  # a secret file outside
        "/etc/shadow",  # the real one, wherever it exists
        "/etc/passwd",
        "{root}/traces/../etc/shadow",  # .. out of the directory
        "../etc/shadow",  # relative, taken under the directory, then .. out of it
        "{root}/traces",  # the directory itself is not a file in it
        "{root}/traces/escape.csv",  # a symlink inside pointing outside
        "{root}/traces/deeper/escape.csv",  # a symlinked directory pointing outside
    ],
)
def test_a_trace_file_outside_the_directories_is_refused(traces: pathlib.Path, path: str) -> None:
    root = traces.parent
    (traces / "escape.csv").symlink_to(root / "etc" / "shadow")
    (traces / "deeper").symlink_to(root / "etc")
    message = refused_trace(path.format(root=root), [traces])
    assert "outside the trace directories" in message
    assert "--trace-dir" in message and "signals.traceDirectories" in message


def test_without_a_trace_directory_every_trace_file_is_refused(traces: pathlib.Path) -> None:
    message = refused_trace(traces / "fr.csv", [])
    assert "trace sources are off" in message and "--trace-dir" in message


def test_allowed_trace_files_load(traces: pathlib.Path, tmp_path: pathlib.Path) -> None:
    inside = tracefile.load_csv(traces / "fr.csv", within=[traces])
    assert inside.values == (41.0, 43.0)
    assert tracefile.load_csv(pathlib.Path("fr.csv"), within=[traces]) == inside  # relative
    (traces / "sub").mkdir()
    (traces / "sub" / "alias.csv").symlink_to(traces / "fr.csv")  # a link that stays inside
    assert tracefile.load_csv(traces / "sub" / "alias.csv", within=[traces]) == inside
    assert tracefile.load_csv(traces / "sub" / ".." / "fr.csv", within=[traces]) == inside
    # The directory itself given through a symlink, and a second directory.
    link = tmp_path / "traces-link"
    link.symlink_to(traces)
    other = tmp_path / "other"
    other.mkdir()
    (other / "de.csv").write_text(TRACE)
    assert tracefile.load_csv(link / "fr.csv", within=[link]) == inside
    assert tracefile.load_csv(other / "de.csv", within=[traces, other]) == inside
    # A ConfigMap mounted by the kubelet: <key> -> ..data/<key>, ..data -> ..<timestamp>.
    mount_secret(traces, "grid", {"fr.csv": TRACE})
    assert tracefile.load_csv(traces / "grid" / "fr.csv", within=[traces]) == inside


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (f"header\n{SECRET}\n", 2, "1 column(s), expected at least 2"),
        (f"header\n{SECRET},5\n", 2, "column 1 is not a time"),
        (f"Time,v\n2026-03-01 00:00:00,1\n2026-03-01 01:00:00,{SECRET}\n", 3, "column 2 is not"),
        (f"Time,v\n2026-03-01 00:00:00,1\n\n{SECRET},2\n", 4, "column 1 is not a time"),
        ("Time,v\n2026-03-01 00:00:00,1\n2026-03-01 01:00:00,\xff\xfe\n", 3, "not UTF-8 text"),
        ("Time,v\n" + "x" * 200_000 + "\n", 2, "not CSV (field larger than field limit"),
    ],
)
def test_a_malformed_trace_names_file_and_line_but_never_the_content(
    traces: pathlib.Path, content: str, line: int, problem: str
) -> None:
    path = traces / "bad.csv"
    path.write_bytes(content.encode("latin-1") if "\xff" in content else content.encode())
    with pytest.raises(ValueError) as error:
        tracefile.load_csv(path, within=[traces])
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: ") and problem in message
    assert "hunter2" not in message and "xxxx" not in message and "\\xff" not in message


def test_a_fifo_or_device_is_refused_without_hanging(traces: pathlib.Path) -> None:
    os.mkfifo(traces / "pipe.csv")
    with pytest.raises(ValueError, match="not a regular file"):
        tracefile.load_csv(traces / "pipe.csv", within=[traces])
    with pytest.raises(contract.SignalNotAllowedError):
        tracefile.load_csv(pathlib.Path("/dev/zero"), within=[traces])


# ---------------------------------------------------------------- URLs as written

STRICT = egress.EgressPolicy()


def refused_url(url: str, policy: egress.EgressPolicy = STRICT) -> str:
    with pytest.raises(contract.SignalNotAllowedError) as refused:
        policy.check_url(url)
    return str(refused.value)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://api.electricitymap.org", "plain http is not allowed"),
        ("ftp://api.electricitymap.org", "scheme 'ftp' is not allowed"),
        ("file:///etc/shadow", "scheme 'file' is not allowed"),
        ("https://user:hunter2@api.electricitymap.org", "credentials in the URL"),
        ("https://hunter2@api.electricitymap.org", "credentials in the URL"),
        ("https://api.example.org/v1?token=hunter2", "query parameter 'token'"),
        ("https://api.example.org/v1?zone=FR&api_key=hunter2", "query parameter 'api_key'"),
        ("https://api.example.org/?apikey=hunter2", "query parameter 'apikey'"),
        ("https://api.example.org/?Password=hunter2", "query parameter 'Password'"),
        ("https://api.example.org/?client_secret=hunter2", "query parameter 'client_secret'"),
        ("https://api.example.org/?access_token=hunter2", "query parameter 'access_token'"),
        ("https://api.example.org/?accessToken=hunter2", "query parameter 'accessToken'"),
        ("https://api.example.org/?privatetoken=hunter2", "query parameter 'privatetoken'"),
        ("https://api.example.org/?X-Amz-Signature=hunter2", "query parameter 'X-Amz-Sig"),
        ("https://api.example.org\\@127.0.0.1/", "backslash"),
        ("https://api.example.org /", "whitespace"),
        ("https://", "has no host"),
        ("https://api.example.org:99999/", "cannot be parsed"),
    ],
)
def test_insecure_or_credential_bearing_urls_are_refused(url: str, why: str) -> None:
    message = refused_url(url)
    assert why in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),  # the cloud metadata endpoint
        ("169.254.0.1", "link-local"),
        ("[fe80::1]", "link-local"),
        ("10.0.0.1", "private"),
        ("10.96.0.1", "private"),  # a typical Service address (the API server's)
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("[fc00::1]", "private"),
        ("[fd12:3456::1]", "private"),
        ("0.0.0.0", "private"),  # "this host": connecting to it reaches loopback on Linux
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT, some pod networks
        ("224.0.0.1", "not a public address"),  # multicast
        ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped IPv6
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[64:ff9b::a9fe:a9fe]", "link-local"),  # NAT64 of 169.254.169.254
        ("[2002:7f00:1::]", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_every_private_range_is_refused_as_an_address(host: str, kind: str) -> None:
    message = refused_url(f"https://{host}:9090/api")
    assert kind in message
    assert "--allow-signal-hosts=" in message and "signals.allowHosts" in message


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "localhost.",
        "api.localhost",
        "kubernetes.default.svc",
        "prometheus.monitoring.svc.cluster.local",
        "printer.local",
        "metadata.google.internal",
        "prometheus",  # one label: the pod's DNS search path makes it a Service
        "kubernetes",
    ],
)
def test_internal_names_are_refused(host: str) -> None:
    assert "local or cluster-internal name" in refused_url(f"https://{host}/")


@pytest.mark.parametrize(
    "url",
    [
        "https://api.electricitymap.org",
        "https://api.watttime.org/v3",
        "https://8.8.8.8/",
        "https://172.32.0.1/",  # just outside 172.16.0.0/12
        "https://192.169.0.1/",
        "https://[2606:4700::1111]/",
        "https://api.example.org/v1?zone=FR&monkey=1&horizon=24",
    ],
)
def test_https_to_public_hosts_is_allowed(url: str) -> None:
    STRICT.check_url(url)


def test_the_configuration_allows_what_it_lists_and_nothing_more() -> None:
    policy = egress.EgressPolicy.parse(
        ["127.0.0.1", "10.0.0.0/8,prometheus.monitoring", "*.svc.cluster.local"],
        allow_http=True,
    )
    for url in (
        "http://127.0.0.1:9090",
        "https://10.1.2.3",
        "http://prometheus.monitoring:9090",
        "http://PROMETHEUS.monitoring.:9090",
        "http://prometheus.monitoring.svc.cluster.local:9090",
    ):
        policy.check_url(url)
    assert "loopback" in refused_url("http://127.0.0.2:9090", policy)
    assert "private" in refused_url("http://192.168.1.1", policy)
    assert "local or cluster-internal" in refused_url("http://svc.cluster.local", policy)
    assert "local or cluster-internal" in refused_url("http://prometheus:9090", policy)
    assert "credentials in the URL" in refused_url("http://u:p@127.0.0.1:9090", policy)
    https_only = egress.EgressPolicy.parse(["127.0.0.1"])
    assert "plain http" in refused_url("http://127.0.0.1:9090", https_only)


@pytest.mark.parametrize("entry", ["", "not a host", "-bad-.example", "10.0.0.0/33", "a,b"])
def test_bad_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        egress.parse_entry(entry)


@pytest.mark.parametrize("flag", ["not a host", "-bad-.example", "10.0.0.0/33", "a,b c,d"])
def test_bad_allow_list_flags_stop_the_operator_at_startup(flag: str) -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["operate", f"--allow-signal-hosts={flag}"])


# ---------------------------------------------------------------- addresses connected to


def resolver(table: dict[str, list[str]]) -> egress.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return table[host]

    return resolve


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["93.184.216.34", "10.0.0.7"], ["::1"], ["169.254.169.254"], ["::ffff:7f00:1"]],
)
def test_a_public_name_resolving_to_an_inside_address_is_refused(addresses: list[str]) -> None:
    policy = egress.EgressPolicy(resolver=resolver({"evil.example": addresses}))
    policy.check_url("https://evil.example/")  # as written it is fine: no DNS at this stage
    with pytest.raises(contract.SignalNotAllowedError, match=r"evil\.example resolves to"):
        policy.addresses("evil.example", 443)
    public = egress.EgressPolicy(resolver=resolver({"good.example": ["93.184.216.34"]}))
    assert public.addresses("good.example", 443) == ["93.184.216.34"]
    named = egress.EgressPolicy.parse(
        ["evil.example"], resolver=resolver({"evil.example": addresses})
    )
    assert named.addresses("evil.example", 443) == addresses  # the name itself is allowed


class _Echo(http.server.BaseHTTPRequestHandler):
    """Answers JSON naming the Host header; ``/hop`` redirects to ``Location`` of the query."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/hop?to="))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = f'{{"host": "{self.headers.get("host")}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def echo() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fetch_httpx(policy: egress.EgressPolicy, url: str) -> Any:
    with httpx.Client(transport=policy.guard_httpx(), timeout=2) as client:
        return client.get(url).json()


def fetch_requests(policy: egress.EgressPolicy, url: str) -> Any:
    with requests.Session() as session:
        policy.guard_session(session)
        return session.get(url, timeout=2).json()


@pytest.mark.parametrize("fetch", [fetch_httpx, fetch_requests], ids=["httpx", "requests"])
def test_connections_go_only_to_checked_addresses(
    echo: int, fetch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # "127.1" is no literal address and no internal name, but resolves to 127.0.0.1.
    strict = egress.EgressPolicy(allow_http=True)
    with pytest.raises(contract.SignalNotAllowedError, match=r"127\.1 resolves to 127\.0\.0\.1"):
        fetch(strict, f"http://127.1:{echo}/")
    assert any("refused a signal connection to 127.1" in r.message for r in caplog.records)
    loopback = egress.EgressPolicy.parse(["127.0.0.1"], allow_http=True)
    assert fetch(loopback, f"http://127.1:{echo}/") == {"host": f"127.1:{echo}"}
    # A name the system cannot resolve: the connection goes where *our* check resolved it, the
    # address that was judged, so a second (rebinding) lookup has nothing to change.
    rebinding = resolver({"rebind.example": ["127.0.0.1"]})
    pinned = egress.EgressPolicy.parse(["127.0.0.1"], allow_http=True, resolver=rebinding)
    got = fetch(pinned, f"http://rebind.example:{echo}/")
    assert got == {"host": f"rebind.example:{echo}"}
    unpinned = egress.EgressPolicy(allow_http=True, resolver=rebinding)
    with pytest.raises(contract.SignalNotAllowedError, match=r"rebind\.example resolves to"):
        fetch(unpinned, f"http://rebind.example:{echo}/")


def test_a_redirect_to_a_refused_address_is_refused(echo: int) -> None:
    policy = egress.EgressPolicy.parse(["127.0.0.1"], allow_http=True)
    for target in (f"http://169.254.169.254:{echo}/", f"http://localhost:{echo}/"):
        with pytest.raises(contract.SignalNotAllowedError):
            fetch_requests(policy, f"http://127.0.0.1:{echo}/hop?to={target}")
    querier = promql.Querier(f"http://127.0.0.1:{echo}/hop?to=http://10.0.0.1/", policy=policy)
    with pytest.raises(contract.SignalNotAllowedError, match=r"10\.0\.0\.1 is a private"):
        querier.vector("up", NOW)


def test_answers_are_described_not_copied() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/json-error":
            return httpx.Response(400, json={"error": "zone XX is unknown"})
        if request.url.path == "/text":
            return httpx.Response(200, text=SECRET, headers={"content-type": "text/plain"})
        return httpx.Response(500, text=SECRET, headers={"content-type": "text/html"})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    for path, kind, shown in (
        ("/json-error", contract.SignalHttpError, "error: 'zone XX is unknown'"),
        ("/secret", contract.SignalHttpError, f"HTTP 500 ({len(SECRET)} bytes of text/html, not"),
        ("/text", contract.SignalMalformedError, f"({len(SECRET)} bytes of text/plain, not shown)"),
    ):
        with pytest.raises(kind) as error:
            httpjson.get_json(client, f"https://peer.example{path}", where="test")
        assert shown in str(error.value) and "hunter2" not in str(error.value)
    with pytest.raises(contract.SignalMalformedError) as missing:
        httpjson.require({"password": SECRET}, "carbonIntensity", where="test")
    assert "hunter2" not in str(missing.value)
    wrapped = promql._peer_error(Exception(f"HTTP Status Code 502 ({SECRET.encode()!r})"))
    assert wrapped == f"HTTP 502 ({len(SECRET)} bytes, not shown)"
    prom = b'{"status":"error","errorType":"bad_data","error":"1:8: parse error"}'
    assert "error: '1:8: parse error'" in promql._peer_error(
        Exception(f"HTTP Status Code 400 ({prom!r})")
    )


def test_a_source_given_a_mock_transport_still_checks_its_urls() -> None:
    source = electricitymaps.ElectricityMapsSource(
        "emaps",
        "token",
        ttl=datetime.timedelta(hours=1),
        base_url="https://169.254.169.254/latest/meta-data",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json={})),
        policy=STRICT,
    )
    with pytest.raises(contract.SignalNotAllowedError, match="link-local"):
        source.latest(FR, NOW)


# ---------------------------------------------------------------- through the operator's feeds


def spec(*sources: dict[str, Any], name: str = "grid") -> cache.CachedSignalSource:
    body = {"signal": "CarbonIntensity", "zones": ["FR"], "sources": list(sources)}
    return cache.CachedSignalSource(name, 1, models.SignalSourceSpec.model_validate(body))


STATIC = {"name": "static", "kind": "Static", "static": {"values": {"FR": 300}}}


def read(signals: feeds.Feeds, *sources: cache.CachedSignalSource) -> dict[str, Any]:
    observed = signals.read(list(sources), NOW)
    return {name: readings[0] for name, readings in observed.by_source.items()}


def test_refused_sources_fall_back_and_leave_other_signal_sources_alone(
    traces: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = traces.parent
    signals = feeds.Feeds(memory=datetime.timedelta(0), trace_directories=[traces])
    shadow = {"name": "shadow", "kind": "Trace", "trace": {"files": {"FR": f"{root}/etc/shadow"}}}
    metadata = {
        "name": "metadata", "kind": "Prometheus", "timeout": "1s",
        "prometheus": {"url": "http://169.254.169.254/latest", "query": "up"},
    }  # fmt: skip
    good = {"name": "fr", "kind": "Trace", "trace": {"files": {"FR": "fr.csv"}}}
    with caplog.at_level(logging.WARNING, logger="greenplace.controller.feeds"):
        got = read(
            signals,
            spec(shadow, metadata, STATIC, name="hostile"),
            spec(good, name="honest"),
        )
    hostile = got["hostile"]
    assert (hostile.value, hostile.source, hostile.status.reason) == (300.0, "static", R.FALLBACK)
    assert [(a.source, a.reason) for a in hostile.status.attempts] == [
        ("shadow", R.NOT_ALLOWED),
        ("metadata", R.NOT_ALLOWED),
    ]
    assert "outside the trace directories" in hostile.status.attempts[0].message
    assert "plain http is not allowed" in hostile.status.attempts[1].message
    assert "hunter2" not in hostile.status.message
    honest = got["honest"]
    assert (honest.value, honest.source, honest.status.reason) == (43.0, "fr", R.FRESH)
    logged = [r.getMessage() for r in caplog.records]
    assert any("SignalSource hostile: source shadow refused" in m for m in logged)
    assert any("SignalSource hostile: source metadata refused" in m for m in logged)
    assert not any("hunter2" in m for m in logged)


def test_a_malformed_trace_in_the_directory_is_missing_without_its_content(
    traces: pathlib.Path,
) -> None:
    (traces / "copied.csv").write_text(f"{SECRET},1\n{SECRET},2\n")
    signals = feeds.Feeds(memory=datetime.timedelta(0), trace_directories=[traces])
    bad = {"name": "bad", "kind": "Trace", "trace": {"files": {"FR": "copied.csv"}}}
    gone = {"name": "gone", "kind": "Trace", "trace": {"files": {"FR": "nothing.csv"}}}
    reading = read(signals, spec(bad, gone))["grid"]
    assert reading.value is None and reading.status.reason is R.UNAVAILABLE
    first, second = reading.status.attempts
    assert first.reason is R.MISSING and f"{traces}/copied.csv:2: column 1 is not a time" in (
        first.message
    )
    assert second.reason is R.MISSING and f"cannot open {traces}/nothing.csv" in second.message
    assert "hunter2" not in reading.status.message


def test_http_sources_reach_127_0_0_1_only_when_allowed(tmp_path: pathlib.Path) -> None:
    with serve() as provider:
        emaps = {
            "name": "emaps", "kind": "ElectricityMaps", "timeout": "1s",
            "electricityMaps": {"url": provider.url},
            "credentialsSecretRef": {"name": "emaps", "namespace": "greenplace-system"},
        }  # fmt: skip
        refusing = feeds.Feeds(memory=datetime.timedelta(0), allow_insecure_http=True)
        reading = read(refusing, spec(emaps, STATIC))["grid"]
        assert (reading.source, reading.status.reason) == ("static", R.FALLBACK)
        (attempt,) = reading.status.attempts
        assert attempt.reason is R.NOT_ALLOWED and "127.0.0.1 is a loopback" in attempt.message
        assert provider.requests == []  # refused before any request
        allowing = feeds.Feeds(
            memory=datetime.timedelta(0),
            allow_hosts=["127.0.0.1"],
            allow_insecure_http=True,
            credentials_dir=tmp_path,
        )
        mount_secret(tmp_path, "emaps", {"token": "em-token"})
        reading = read(allowing, spec(emaps, STATIC))["grid"]
        assert (reading.value, reading.source, reading.status.reason) == (42.0, "emaps", R.FRESH)


# ---------------------------------------------------------------- flags and chart values


def test_the_flags_default_to_the_operator_configs_defaults() -> None:
    config = operate.config_from(cli.build_parser().parse_args(["operate"]))
    default = handlers.OperatorConfig()
    assert config.trace_directories == default.trace_directories == ()
    assert config.allow_signal_hosts == default.allow_signal_hosts == ()
    assert config.allow_insecure_signal_http is default.allow_insecure_signal_http is False
    given = operate.config_from(
        cli.build_parser().parse_args([
            "operate", "--trace-dir=/a,/b", "--trace-dir", "/c",
            "--allow-signal-hosts=127.0.0.1,10.0.0.0/8", "--allow-signal-hosts=*.svc",
            "--allow-insecure-signal-http",
        ])
    )  # fmt: skip
    assert given.trace_directories == tuple(map(pathlib.Path, ("/a", "/b", "/c")))
    assert given.allow_signal_hosts == ("127.0.0.1", "10.0.0.0/8", "*.svc")
    assert given.allow_insecure_signal_http is True


def test_chart_values_reach_the_operator() -> None:
    from tests.charts import operator_pod  # noqa: PLC0415 - builds helm on first use

    (container,) = operator_pod()["containers"]
    default = operate.config_from(cli.build_parser().parse_args(container["args"]))
    assert (default.trace_directories, default.allow_signal_hosts) == ((), ())
    assert default.allow_insecure_signal_http is False
    pod = operator_pod(
        "signals.traceDirectories={/traces,/more}",
        "signals.allowHosts={127.0.0.1,*.monitoring.svc}",
        "signals.allowInsecureHttp=true",
    )
    (container,) = pod["containers"]
    config = operate.config_from(cli.build_parser().parse_args(container["args"]))
    assert config.trace_directories == (pathlib.Path("/traces"), pathlib.Path("/more"))
    assert config.allow_signal_hosts == ("127.0.0.1", "*.monitoring.svc")
    assert config.allow_insecure_signal_http is True
