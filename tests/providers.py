"""A local HTTP peer speaking the Electricity Maps v3 and WattTime v3 APIs, faults on demand.

Why this module exists: the clients' unit tests and the operator's integration tests talk to the
same fake provider on 127.0.0.1 (a free port) instead of the real services. A test sets, on the
server it gets from ``serve``: ``mode`` (ok | 500 | garbage | slow | stale | expire-token-once),
the Electricity Maps tokens accepted (``em_tokens``, each answered with its own intensity, so a
test sees which token was used), WattTime's password, and ``live`` (observation times relative
to the wall clock, for a running operator, instead of the fixed ``NOW``). Every request is
recorded with its headers. ``mount_secret`` writes the credentials as a Secret volume mounted
in the operator's pod, updates included.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import json
import os
import pathlib
import shutil
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
TIMEOUT_S = 0.3  # the clients' timeout in the unit tests; "slow" answers take four times that


def iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeProvider(http.server.ThreadingHTTPServer):
    """The remote peer; its settings may be changed while it serves."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "ok"
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.em_tokens: dict[str, float] = {"em-token": 42.0}  # token -> intensity answered
        self.wt_password = "secret"  # WattTime's account is user:<this>
        self.live = False
        # Electricity Maps' intensity as a schedule of (from, value), sorted: the latest value is
        # the one in force on the wall clock, the forecast is the whole schedule. None: the
        # fixed answers of ``em_tokens``.
        self.schedule: list[tuple[datetime.datetime, float]] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def now(self) -> datetime.datetime:
        """``NOW``, or (``live``) the wall clock to the minute: the data is published by minute."""
        if not self.live:
            return NOW
        return datetime.datetime.now(datetime.UTC).replace(second=0, microsecond=0)


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeProvider

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.server.requests.append((url.path, {k.lower(): v for k, v in self.headers.items()}))
        mode = self.server.mode
        if mode == "slow":
            time.sleep(TIMEOUT_S * 4)
        if mode == "500":
            return self._send(500, b"internal error")
        if mode == "garbage":
            return self._send(200, b"<html>not json</html>")
        body = self._answer(url.path, query, mode)
        if body is None:
            return self._send(401, b"{}")
        return self._send(200, json.dumps(body).encode())

    def _answer(self, path: str, query: dict[str, str], mode: str) -> Any:
        now = self.server.now()
        observed = now - datetime.timedelta(hours=3 if mode == "stale" else 0, minutes=5)
        if path.startswith("/v3/carbon-intensity/"):
            value = self.server.em_tokens.get(self.headers.get("auth-token") or "")
            if value is None:
                return None
            if self.server.schedule is not None:
                return self._scheduled(path, query["zone"], self.server.schedule)
            if path.endswith("/latest"):
                return {"zone": query["zone"], "carbonIntensity": value, "datetime": iso(observed)}
            hours = [now + datetime.timedelta(hours=h) for h in range(4)]
            return {
                "zone": query["zone"],
                "forecast": [
                    {"carbonIntensity": value - 2 + 10 * i, "datetime": iso(t)}
                    for i, t in enumerate(hours)
                ],
                "updatedAt": iso(now),
            }
        if path == "/login":
            account = f"user:{self.server.wt_password}".encode()
            expected = "Basic " + base64.b64encode(account).decode()
            return (
                {"token": f"tok-{len(self.server.requests)}"}
                if self.headers.get("authorization") == expected
                else None
            )
        if not (self.headers.get("authorization") or "").startswith("Bearer tok-"):
            return None
        if mode == "expire-token-once":
            self.server.mode = "ok"
            return None
        if path == "/v3/forecast":
            n = int(query["horizon_hours"]) * 12 or 1
            points = [
                {
                    "point_time": iso(observed + datetime.timedelta(minutes=5 * i)),
                    "value": 1000.0 - i,
                }
                for i in range(n)
            ]
            return {"data": points, "meta": {"units": "lbs_co2_per_mwh", "region": query["region"]}}
        if path == "/v3/signal-index":
            return {
                "data": [{"point_time": iso(observed), "value": 37.0}],
                "meta": {"units": "percentile"},
            }
        return {}

    @staticmethod
    def _scheduled(path: str, zone: str, schedule: list[tuple[datetime.datetime, float]]) -> Any:
        if path.endswith("/latest"):
            clock = datetime.datetime.now(datetime.UTC)
            since, value = max((p for p in schedule if p[0] <= clock), default=schedule[0])
            return {"zone": zone, "carbonIntensity": value, "datetime": iso(since)}
        points = [{"carbonIntensity": v, "datetime": iso(t)} for t, v in schedule]
        return {"zone": zone, "forecast": points, "updatedAt": iso(schedule[0][0])}

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


Server = TypeVar("Server", bound=http.server.HTTPServer)


@contextlib.contextmanager
def serve() -> Iterator[FakeProvider]:
    """A fake provider serving in a thread until the block ends."""
    with running(FakeProvider()) as server:
        yield server


@contextlib.contextmanager
def running(server: Server, poll_interval_s: float = 0.5) -> Iterator[Server]:
    """``server`` serving in a thread until the block ends; its shutdown waits up to
    ``poll_interval_s``."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval_s,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def mount_secret(directory: pathlib.Path, name: str, data: Mapping[str, str]) -> pathlib.Path:
    """Write Secret ``name`` under ``directory`` as the kubelet does, or update it in place.

    The kubelet's layout: the keys live in a timestamped ``..<stamp>/`` directory, ``..data`` is
    a symbolic link to it, and each key is a link ``<key> -> ..data/<key>``. An update writes a
    new timestamped directory and swaps ``..data`` with one rename, so a reader sees the old or
    the new Secret, never half of it; keys gone from the Secret lose their link.
    """
    volume = directory / name
    volume.mkdir(parents=True, exist_ok=True)
    current = volume / "..data"
    previous = os.readlink(current) if current.is_symlink() else None
    stamp = volume / f"..{uuid.uuid4().hex}"
    stamp.mkdir()
    for key, value in data.items():
        (stamp / key).write_text(value)
        (stamp / key).chmod(0o440)
    swap = volume / "..data_tmp"
    swap.symlink_to(stamp.name)
    swap.replace(current)
    for link in volume.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in data:
            link.unlink()
    for key in data:
        if not (volume / key).is_symlink():
            (volume / key).symlink_to(f"..data/{key}")
    if previous is not None:
        shutil.rmtree(volume / previous)
    return volume
