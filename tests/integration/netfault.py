"""A TCP proxy on loopback that can stall connections silently, to test watch-stall recovery.

Why this module exists: the failures that hurt an operator in production are silent ones. A
NAT or load balancer forgets a connection and nothing arrives any more, without a reset. The
operator talks to the real API server through this proxy (its kubeconfig points here), and a
test decides when the network misbehaves:

- ``freeze()``: every connection open now stops carrying bytes, forever, without closing (a
  dropped NAT entry). New connections work.
- ``blackhole()``: a partition: open and new connections all stop carrying bytes.
- ``heal()``: new connections work again (frozen ones stay dead, as in real life).

TLS passes through untouched: the client still verifies the API server's certificate.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import select
import socket
import threading

__all__ = ["StallingProxy"]


class _Link:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.frozen = threading.Event()

    def pump(self) -> None:
        """Relay both ways until either side closes or the link is frozen.

        A frozen link's sockets stay open and unread (the proxy keeps them): the peers see
        silence, never a reset.
        """
        pairs = {self.client: self.upstream, self.upstream: self.client}
        try:
            while not self.frozen.is_set():
                readable, _, _ = select.select(list(pairs), [], [], 0.1)
                for source in readable:
                    if self.frozen.is_set():
                        return
                    data = source.recv(65536)
                    if not data:
                        self.close()
                        return
                    pairs[source].sendall(data)
        except OSError:
            self.close()

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.close()


class StallingProxy:
    """Forward 127.0.0.1:<port> to ``upstream``; see the module docstring for the faults."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._links: list[_Link] = []
        self._blackholed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def kubeconfig(self, original: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
        """A copy of ``original`` whose server is this proxy."""
        config = json.loads(original.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        target.write_text(json.dumps(config))
        return target

    def freeze(self) -> int:
        """Stall every open connection; return how many."""
        with self._lock:
            live = [link for link in self._links if not link.frozen.is_set()]
            for link in live:
                link.frozen.set()
            return len(live)

    def blackhole(self) -> None:
        with self._lock:
            self._blackholed = True
        self.freeze()

    def heal(self) -> None:
        with self._lock:
            self._blackholed = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for link in self._links:
                link.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
                if self._blackholed:
                    link.frozen.set()
            threading.Thread(target=link.pump, daemon=True).start()
