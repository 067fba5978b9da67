"""One bounded HTTP GET returning JSON, with failures mapped to signal reason codes.

Why this module exists: the Electricity Maps and WattTime clients must fail the same way on a
timeout, a refused connection, a 5xx or a body that is not JSON, and every call must have a
timeout. That logic lives here once; the clients only build URLs and read fields.

Credentials are given as a ``Credential``: a string, or a function called at every use so that a
rotated secret (a mounted Secret file the kubelet rewrites) is picked up without a restart.

Given an ``egress.EgressPolicy`` (the operator always gives its own), every request's URL is
checked and connections go only to addresses the policy accepts (``egress.guard_httpx``).
Without one (a library user's choice), nothing is checked.

What a peer answered is never copied into messages (they end up in the SignalSource status,
which whoever wrote the SignalSource can read): a non-2xx or unreadable answer is described by
its status, type and size, plus the ``error``/``message`` field of a JSON error body, truncated.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from greenplace.signals import contract, egress

__all__ = [
    "Credential",
    "HttpSource",
    "describe_answer",
    "get_json",
    "number",
    "parse_time",
    "require",
    "reveal",
]

# A credential, or a function reading it at each use; it raises SignalCredentialsError when
# there is none to read (saying where it should be).
Credential = str | Callable[[], str]


def reveal(credential: Credential) -> str:
    """The credential's current value (read again at each call when it is a function)."""
    return credential() if callable(credential) else credential


class HttpSource:
    """What the HTTP sources share: name, TTL, base URL and one client with a timeout."""

    def __init__(
        self,
        name: str,
        ttl: datetime.timedelta,
        base_url: str,
        timeout_s: float,
        transport: httpx.BaseTransport | None,
        *,
        policy: egress.EgressPolicy | None = None,
    ) -> None:
        self.name = name
        self.ttl = ttl
        self._base = base_url.rstrip("/")
        if policy is not None:
            transport = policy.guard_httpx(transport)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), transport=transport)

    def close(self) -> None:
        self._client.close()


def get_json(
    client: httpx.Client,
    url: str,
    *,
    where: str,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: httpx.BasicAuth | None = None,
) -> Any:
    """GET ``url`` and decode JSON; raise a ``SignalError`` naming ``where`` and the fix."""
    try:
        answer = client.get(url, params=params, headers=headers, auth=auth)
    except httpx.TimeoutException as error:
        raise contract.SignalTimeoutError(
            f"{where}: no answer from {url} within {client.timeout.read} s; the provider is slow "
            "or unreachable: the chain falls back, raise the timeout if this persists"
        ) from error
    except httpx.HTTPError as error:
        raise contract.SignalUnreachableError(
            f"{where}: cannot reach {url} ({type(error).__name__}: {error}); check the URL, "
            "DNS and egress network policy"
        ) from error
    if answer.status_code in {401, 403}:
        raise contract.SignalCredentialsError(
            f"{where}: {url} answered {answer.status_code} (credentials refused); check the "
            "Secret named by the SignalSource's credentialsSecretRef"
        )
    if answer.status_code >= 300:
        raise contract.SignalHttpError(
            f"{where}: {url} answered HTTP {answer.status_code} "
            f"({describe_answer(answer.content, answer.headers.get('content-type'))})"
        )
    try:
        return answer.json()
    except ValueError as error:
        raise contract.SignalMalformedError(
            f"{where}: {url} answered non-JSON "
            f"({describe_answer(answer.content, answer.headers.get('content-type'))})"
        ) from error


def describe_answer(content: bytes, content_type: str | None) -> str:
    """An answer's type and size, and the error text of a JSON error body, never the body."""
    kind = (content_type or "").split(";")[0].strip()[:60]
    shown = f"{len(content)} bytes" + (f" of {kind}" if kind else "")
    try:
        document = json.loads(content)
    except ValueError:
        return f"{shown}, not shown"
    if isinstance(document, dict):
        for field in ("error", "message", "detail"):
            text = document.get(field)
            if isinstance(text, str) and text:
                return f"{shown}; {field}: {text[:200]!r}"
    return f"{shown}, not shown"


def require(document: Any, *path: str | int, where: str) -> Any:
    """``document[path[0]][path[1]]...`` or ``SignalMalformedError`` saying which field."""
    value = document
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            shown = ".".join(str(p) for p in path)
            raise contract.SignalMalformedError(
                f"{where}: answer has no field {shown} (a JSON {_kind(document)} without it)"
            ) from None
    return value


def _kind(document: Any) -> str:
    if isinstance(document, dict):
        return "object"
    return "array" if isinstance(document, list) else type(document).__name__


def parse_time(text: Any, *, where: str) -> datetime.datetime:
    """An ISO 8601 instant ('...Z' accepted); naive instants are refused, not guessed."""
    try:
        when = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise contract.SignalMalformedError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise contract.SignalMalformedError(f"{where}: time {text!r} has no time zone")
    return when


def number(value: Any, *, where: str) -> float:
    """A JSON number as float, refusing strings, booleans and null."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise contract.SignalMalformedError(f"{where}: {value!r} is not a number")
    return float(value)
