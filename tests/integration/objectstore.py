"""A real S3-compatible object store for the BillingExport tests: MinIO on 127.0.0.1.

Why this module exists: the operator reads billing exports from object stores with pyarrow's
S3 filesystem (``controller.exports``); only a real store proves the requests it signs, the
listing it pages and the errors it tells apart (a wrong secret key is SIGNATURE_DOES_NOT_MATCH,
a deleted object a 404). MinIO is built from the Go module proxy like the control plane
(``devcluster.build``, the on-demand ``minio`` component, devcluster/go/minio), started with
a random root user and password in a temporary directory, on loopback ports only (its API and
its console), and stopped with the test module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

from devcluster import build, cluster
from tests.integration.conftest import wait_for

__all__ = ["ObjectStore", "running_minio"]


@dataclasses.dataclass(frozen=True)
class ObjectStore:
    """A running MinIO: where it listens and its root access key."""

    endpoint: str  # http://127.0.0.1:<port>
    access_key: str
    secret_key: str
    log: pathlib.Path

    def filesystem(self) -> Any:
        """pyarrow's S3 filesystem on this store, as its root user (creates buckets)."""
        from pyarrow import fs  # noqa: PLC0415 - the finops extra

        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint.removeprefix("http://"),
            scheme="http",
            allow_bucket_creation=True,
        )

    def put(self, key: str, data: bytes) -> None:
        """Write the object ``bucket/key`` (its bucket created when missing)."""
        store = self.filesystem()
        store.create_dir(key.split("/", 1)[0])
        with store.open_output_stream(key) as stream:
            stream.write(data)


@contextlib.contextmanager
def running_minio(directory: pathlib.Path) -> Iterator[ObjectStore]:
    """MinIO serving ``directory`` on two free loopback ports until the block ends."""
    binary = build.ensure_built(extra=("minio",))["minio"]
    api, console = cluster.free_ports(2)
    user, password = f"gp-{secrets.token_hex(4)}", secrets.token_hex(16)
    log = directory / "minio.log"
    env = {
        **os.environ,
        "MINIO_ROOT_USER": user,
        "MINIO_ROOT_PASSWORD": password,
        "MINIO_BROWSER": "off",  # no console to serve: the API is all the tests use
        "MINIO_UPDATE": "off",  # never calls home
    }
    command = [str(binary), "server", "--quiet", "--address", f"127.0.0.1:{api}",
               "--console-address", f"127.0.0.1:{console}", str(directory / "data")]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: process.poll() is not None or cluster.port_open(api), 60, "MinIO")
        assert process.poll() is None, log.read_text()[-2000:]
        yield ObjectStore(f"http://127.0.0.1:{api}", user, password, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
