"""Headless Chromium driven over the DevTools protocol, for tests that check rendered HTML.

Why this module exists: a report is only right if a browser lays it out as intended, and two
test modules check reports that way (the simulator's, tests/e2e/test_sim_report.py; the
auditor's, tests/integration/test_ledger.py). Debian's Chromium (``scripts/ensure-chromium.sh``
installs it) is started on a loopback DevTools port with a profile of its own, the page is read
through ``Runtime.evaluate``; no network is used. A missing Chromium fails the test, never
skips it.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

__all__ = ["CHROMIUM", "Session", "open_page"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
    "--window-size=1200,1800",
)


class Session:
    """The smallest DevTools protocol client: one request at a time, events skipped."""

    def __init__(self, socket: websocket.WebSocket, url: str) -> None:
        self._socket = socket
        self._next_id = 0
        self.url = url

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"][
            "value"
        ]

    def wait_loaded(self) -> None:
        """Until the page itself (not the initial blank page) has loaded."""
        deadline = time.monotonic() + 30
        check = f"location.href === {json.dumps(self.url)} && document.readyState"
        while self.evaluate(check) != "complete":
            assert time.monotonic() < deadline, f"{self.url} did not finish loading in 30 s"
            time.sleep(0.1)


@contextlib.contextmanager
def open_page(page: pathlib.Path, profile: pathlib.Path) -> Iterator[Session]:
    """Chromium showing the file ``page``, with its profile in the empty directory ``profile``."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (as root) first")
    url = page.as_uri()
    browser = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _devtools_port(profile, browser)
        socket = websocket.create_connection(
            _page_socket(port, url), timeout=30, suppress_origin=True
        )
        try:
            yield Session(socket, url)
        finally:
            socket.close()
    finally:
        browser.terminate()
        browser.wait(timeout=30)


def _devtools_port(profile: pathlib.Path, browser: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            pytest.fail(f"chromium exited with {browser.returncode} before DevTools was up")
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        time.sleep(0.1)
    pytest.fail("chromium did not open its DevTools port within 60 s")


def _page_socket(port: int, url: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.load(answer)
        for target in targets:
            if target.get("type") == "page" and target.get("url") == url:
                return str(target["webSocketDebuggerUrl"])
        time.sleep(0.1)
    pytest.fail(f"no DevTools page target for {url}")
