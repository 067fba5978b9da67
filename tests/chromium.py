"""Headless Chromium driven over the DevTools protocol, for tests that check rendered HTML.

Why this module exists: a report is only right if a browser lays it out as intended, and two
test modules check reports that way (the simulator's, tests/e2e/test_sim_report.py; the
auditor's, tests/integration/test_ledger.py). Debian's Chromium (``scripts/ensure-chromium.sh``
installs it) is started on a loopback DevTools port with a profile of its own, the page is read
through ``Runtime.evaluate``; no network is used. A missing Chromium fails the test, never
skips it. Nothing polls: the DevTools address is the line Chromium prints when it listens, the
page is opened by ``Target.createTarget`` and loaded once ``Page.loadEventFired`` arrives.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import selectors
import shutil
import subprocess
import threading
import time
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
    """The smallest DevTools protocol client: one request at a time; events kept until asked."""

    def __init__(self, socket: websocket.WebSocket, url: str) -> None:
        self._socket = socket
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self.url = url

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if "method" in message:
                self._events.append(message)
            elif message.get("id") == self._next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    def event(self, method: str) -> dict[str, Any]:
        """The first ``method`` event not yet taken (waiting for it: the socket's timeout)."""
        while True:
            for i, message in enumerate(self._events):
                if message["method"] == method:
                    del self._events[: i + 1]
                    params: dict[str, Any] = message.get("params", {})
                    return params
            self._events.clear()
            message = json.loads(self._socket.recv())
            if "method" in message:
                self._events.append(message)

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"][
            "value"
        ]

    def wait_loaded(self) -> None:
        """Navigate to the page (again) and return once its load event fired."""
        self.call("Page.enable")
        self.call("Page.navigate", url=self.url)
        self.event("Page.loadEventFired")
        assert self.evaluate("location.href") == self.url, f"{self.url} was not the page loaded"


@contextlib.contextmanager
def open_page(page: pathlib.Path, profile: pathlib.Path) -> Iterator[Session]:
    """Chromium showing the file ``page``, with its profile in the empty directory ``profile``."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (as root) first")
    url = page.as_uri()
    browser = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        address = _browser_address(browser)
        browser_socket = websocket.create_connection(address, timeout=30, suppress_origin=True)
        try:
            target = Session(browser_socket, "").call("Target.createTarget", url="about:blank")
        finally:
            browser_socket.close()
        socket = websocket.create_connection(
            f"{address.split('/devtools/')[0]}/devtools/page/{target['targetId']}",
            timeout=30,
            suppress_origin=True,
        )
        try:
            yield Session(socket, url)
        finally:
            socket.close()
    finally:
        browser.terminate()
        browser.wait(timeout=30)


_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def _browser_address(browser: subprocess.Popen[bytes]) -> str:
    """The browser's DevTools socket URL, from the line Chromium prints once it listens; the
    rest of its output is drained in the background (a full pipe would stall it)."""
    assert browser.stderr is not None
    fd = browser.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as waiting:
        waiting.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and waiting.select(left):
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"chromium exited with {browser.wait(30)} before DevTools was up")
            seen += chunk
            if found := _LISTENING.search(seen):
                threading.Thread(target=_drain, args=(fd,), daemon=True).start()
                return found[1].decode()
    pytest.fail("chromium did not open its DevTools port within 60 s")


def _drain(fd: int) -> None:
    while os.read(fd, 65536):
        pass
