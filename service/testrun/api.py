"""The HTTP API, as the client sees it: requests, retries, and errors that say what to do."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

__all__ = ["Client", "CommandError", "NotFoundError", "SseUnavailableError"]

# Transient answers worth another try (a restarting server, a busy one, a proxy).
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Attempts per request: a retried POST is safe, it carries its Idempotency-Key.
_ATTEMPTS = 3
_BACKOFF_S = 0.5
_REQUEST_TIMEOUT_S = 30.0
# The feed sends a heartbeat every 15 s while idle: silence this long means a dead connection.
_SSE_READ_TIMEOUT_S = 45.0
_PAGE_LIMIT = 100

_encode = msgspec.json.Encoder().encode


class CommandError(Exception):
    """Exit 2: a usage, configuration, authentication or connection problem.

    The message says what went wrong and what to do about it.
    """


class NotFoundError(Exception):
    """A 404 from the API: the caller knows what the missing thing is."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SseUnavailableError(Exception):
    """The events feed did not answer as Server-Sent Events: poll instead."""


class Client:
    """An API client for one deployment (`base_url`) and one API key.

    Use it as an async context manager: it owns one aiohttp session.
    """

    def __init__(self, base_url: str, api_key: str) -> None:
        base_url = base_url.strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            msg = (
                f"--url {base_url!r} is not an http(s) URL: give the service's base URL, "
                "for example http://127.0.0.1:8080 (or set TESTRUN_URL)"
            )
            raise CommandError(msg)
        if not api_key.strip():
            msg = "no API key: pass --api-key KEY or set TESTRUN_API_KEY"
            raise CommandError(msg)
        self.base_url = base_url
        self._headers = {"Api-Key": api_key.strip(), "Accept": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            headers=self._headers, timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT_S)
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session (inside `async with`)."""
        if self._session is None:  # pragma: no cover - a programming error
            msg = "use the client inside `async with`"
            raise RuntimeError(msg)
        return self._session

    def console_url(self, run_id: str) -> str:
        """Where a person sees the run in the service's console."""
        return f"{self.base_url}/console/runs/{run_id}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer of one call; retries transient failures.

        Raises `NotFoundError` on a 404 and `CommandError` on anything else
        that is not a success.
        """
        url = f"{self.base_url}{path}"
        data = _encode(body) if body is not None else None
        sent = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.session.request(
                    method, url, data=data, params=params, headers=sent, allow_redirects=False
                ) as response:
                    raw = await response.read()
                    status = response.status
                    content_type = response.content_type
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                if attempt < _ATTEMPTS:
                    await _pause(attempt, None)
                    continue
                raise CommandError(_unreachable(self.base_url, error)) from error
            if status in _RETRY_STATUSES and attempt < _ATTEMPTS:
                await _pause(attempt, retry_after)
                continue
            if status == 409 and _code(raw) == "idempotency_key_in_use" and attempt < _ATTEMPTS:
                await _pause(attempt, None)  # the same request is still being answered
                continue
            return self._answer(method, path, status, content_type, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, method: str, path: str, status: int, content_type: str, raw: bytes) -> Any:
        if content_type != "application/json":
            msg = (
                f"{self.base_url} answered {method} {path} with {status} ({content_type or 'no '}"
                " content type), not the JSON of this service's API: check --url or TESTRUN_URL "
                "(the service's base URL, without /v1)"
            )
            raise CommandError(msg)
        try:
            answer = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError as error:
            msg = f"{self.base_url} answered {method} {path} with invalid JSON: check --url"
            raise CommandError(msg) from error
        if 200 <= status < 300:
            return answer
        code, message = _detail(answer)
        if status == 401:
            msg = (
                f"the service at {self.base_url} refused the API key ({message}): check "
                "--api-key or TESTRUN_API_KEY (an operator makes one with "
                "`python -m service keys create`)"
            )
            raise CommandError(msg)
        if status == 404:
            raise NotFoundError(code, message)
        if code == "idempotency_key_reused":
            msg = (
                f"{message}: a retried step must send the same request; for another run pass "
                "another --idempotency-key (or TESTRUN_IDEMPOTENCY_KEY)"
            )
            raise CommandError(msg)
        msg = f"{method} {path} answered {status} {code}: {message}"
        raise CommandError(msg)

    async def pages(self, path: str, params: dict[str, str]) -> list[Any]:
        """Every item of a paginated list, oldest first."""
        items: list[Any] = []
        query = {**params, "limit": str(_PAGE_LIMIT), "order": "asc"}
        while True:
            page = await self.request("GET", path, params=query)
            items.extend(page["data"])
            after = page["list_metadata"]["after"]
            if after is None:
                return items
            query["after"] = after

    async def events(self, run_id: str, last_id: str | None) -> AsyncIterator[tuple[str, str, str]]:
        """The run's Server-Sent Events after `last_id`: `(id, event, data)` until the stream ends.

        `data` is the event's JSON text, left undecoded: following a run needs
        only the event names, and `run.created` can be megabytes.

        Raises `SseUnavailableError` when the answer is not an event stream,
        and aiohttp or timeout errors when the connection breaks.
        """
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        timeout = aiohttp.ClientTimeout(total=None, sock_read=_SSE_READ_TIMEOUT_S)
        url = f"{self.base_url}/v1/workflows/tests/runs/{run_id}/events"
        async with self.session.get(url, headers=headers, timeout=timeout) as response:
            if response.status != 200 or response.content_type != "text/event-stream":
                msg = f"the events feed answered {response.status} {response.content_type}"
                raise SseUnavailableError(msg)
            pending: list[bytes] = []
            fields: dict[str, str] = {}
            # Chunks, not readline: one event (run.created) can be longer than a line limit;
            # a line is joined once, when its end arrives.
            async for chunk in response.content.iter_any():
                if b"\n" not in chunk:
                    pending.append(chunk)
                    continue
                pending.append(chunk)
                *lines, rest = b"".join(pending).split(b"\n")
                pending = [rest]
                for line in lines:
                    text = line.decode().rstrip("\r")
                    if text == "":
                        if "data" in fields:
                            yield (
                                fields.get("id", ""),
                                fields.get("event", "message"),
                                fields["data"],
                            )
                        fields = {}
                    elif not text.startswith(":"):
                        name, _, value = text.partition(":")
                        fields[name] = value.removeprefix(" ")


async def _pause(attempt: int, retry_after: str | None) -> None:
    delay = _BACKOFF_S * 2 ** (attempt - 1)
    if retry_after is not None and retry_after.isdigit():
        delay = min(float(retry_after), 10.0)
    await asyncio.sleep(delay * (0.75 + random.random() / 2))  # noqa: S311  (jitter)


def _code(raw: bytes) -> str:
    try:
        return _detail(msgspec.json.decode(raw))[0]
    except msgspec.DecodeError:
        return ""


def _detail(answer: Any) -> tuple[str, str]:
    """`(code, message)` of an error answer in the API's format (or of a 422 list)."""
    detail = answer.get("detail") if isinstance(answer, dict) else None
    if isinstance(detail, dict):
        return str(detail.get("code", "")), str(detail.get("message", ""))
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = ".".join(str(part) for part in first.get("loc", []))
        return str(first.get("type", "invalid")), f"{where}: {first.get('msg', '')}"
    return "", str(answer)[:200]


def _unreachable(base_url: str, error: BaseException) -> str:
    reason = str(error) or type(error).__name__
    return (
        f"cannot reach the service at {base_url} ({reason}): check --url or TESTRUN_URL, "
        "and that the server is running (scripts/run starts one on http://127.0.0.1:8080)"
    )
