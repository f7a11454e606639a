"""The LangSmith control plane, reached through one keep-alive session with our credentials.

Every call the daemon makes (the forward, Agent Auth's authenticate and wait, the
providers) goes through ``ControlPlane.send``: the same headers, proxy, timeouts, and
one rule for retries. A request is sent again only where it cannot have been read: a
connect that failed, or a 429 or 503 that says when to come back (``Retry-After``),
within the call's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from bridge import __version__
from bridge.daemon import certificates
from bridge.daemon.config import Credentials

log = logging.getLogger(__name__)

USER_AGENT = f"oauth-bridge/{__version__}"
# A control plane answer bigger than this is not one we can make sense of.
MAX_ANSWER_BYTES = 1 << 20
# Waits between attempts after a failed connect; 429/503 use Retry-After instead.
CONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class Reply:
    """The control plane's answer: status, the body's bytes (capped), its content type."""

    status: int
    raw: bytes
    content_type: str
    truncated: bool = False


class Unreachable(Exception):
    """No answer came: the reason says why, without echoing anything we sent."""

    def __init__(self, reason: str, *, maybe_read: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        # False when nothing can have reached the control plane (the connect failed).
        self.maybe_read = maybe_read


class ControlPlane:
    """The control plane's API: credentials, proxy and retries, shared by every call."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        credentials: Credentials,
        deadline_seconds: float,
        proxy: str | None = None,
    ) -> None:
        self.session = session
        self.proxy = None if proxy is None else URL(proxy).with_user(None)
        proxy_auth = None if proxy is None else aiohttp.BasicAuth.from_url(URL(proxy))
        self.proxy_headers: dict[str, str] | None = None
        self.base_url = URL(base_url)
        self.deadline_seconds = deadline_seconds
        self.credentials = credentials
        # Built once: the headers are the same for every call made as the daemon's user.
        self.common_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if proxy_auth is not None:
            # Credentials in the proxy's URL (http://user:pass@proxy:3128): on the CONNECT
            # for https, on the request itself for plain http (it goes to the proxy whole).
            if self.base_url.scheme == "https":
                self.proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}
            else:
                self.common_headers["Proxy-Authorization"] = proxy_auth.encode()
        self.headers = self.headers_for(credentials)
        # Plain http to the control plane and to any proxy (a control plane on this
        # machine, or one allowed insecure) needs no CA certificates.
        self.may_use_tls = self.base_url.scheme == "https" or (
            proxy is not None and URL(proxy).scheme == "https"
        )

    def headers_for(self, credentials: Credentials) -> dict[str, str]:
        """Return every header of a call made with ``credentials``."""
        headers = dict(self.common_headers)
        if credentials.api_key:
            headers["X-Api-Key"] = credentials.api_key
        if credentials.workspace_id:
            headers["X-Tenant-Id"] = credentials.workspace_id
        if credentials.bearer_token:
            headers["Authorization"] = f"Bearer {credentials.bearer_token}"
        return headers

    @property
    def request_timeout(self) -> float:
        """The session's bound on one request, beyond which an answer is given up."""
        return self.session.timeout.total or 30.0

    def url(self, *segments: str) -> URL:
        """Join path segments to the base URL; each is percent-encoded as one segment."""
        url = self.base_url
        for segment in segments:
            if segment in ("", ".", ".."):
                # A URL path normalises these away: the call would go elsewhere.
                raise ValueError(f"{segment!r} cannot be one path segment")
            # Encoded by hand: yarl's '/' leaves a '/' inside a segment as it is, which
            # would let a provider id reach another path of the control plane.
            url = url.joinpath(quote(segment, safe=""), encoded=True)
        return url

    async def send(
        self,
        method: str,
        url: URL,
        *,
        json: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109  # a per-request aiohttp timeout
        deadline: float | None = None,
        credentials: Credentials | None = None,
    ) -> Reply:
        """Send one request, retried only where it cannot have been read; raise Unreachable.

        ``credentials`` are a caller's, for a call made as its LangSmith user; None, the
        daemon's own.
        """
        headers = self.headers if credentials is None else self.headers_for(credentials)
        if self.may_use_tls and certificates.pending():
            # Read once, in a thread: blocking file reads, kept off the event loop.
            await asyncio.to_thread(certificates.load_deferred)
        loop = asyncio.get_running_loop()
        ends = loop.time() + (self.deadline_seconds if deadline is None else deadline)
        per_request = (
            self.session.timeout
            if timeout is None
            else aiohttp.ClientTimeout(total=timeout, connect=self.session.timeout.connect)
        )
        attempt = 0
        while True:
            attempt += 1
            retry_in: float | None = None
            try:
                async with self.session.request(
                    method,
                    url,
                    json=json,
                    headers=headers,
                    allow_redirects=False,
                    proxy=self.proxy,
                    proxy_headers=self.proxy_headers,
                    timeout=per_request,
                ) as response:
                    raw, truncated = await _read_capped(response)
                    reply = Reply(response.status, raw, response.content_type, truncated)
                    if reply.status in (429, 503):
                        retry_in = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientSSLError, aiohttp.ClientHttpProxyError) as exc:
                raise Unreachable(
                    f"{type(exc).__name__}: {_reason(exc)}", maybe_read=False
                ) from None
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Nothing was sent: the connection (or DNS look-up) itself failed.
                delay = CONNECT_BACKOFF[min(attempt - 1, len(CONNECT_BACKOFF) - 1)]
                if loop.time() + delay >= ends:
                    raise Unreachable(_reason(exc), maybe_read=False) from None
                log.warning(
                    "%s %s attempt %d could not connect (%s); retrying in %.1fs",
                    method,
                    url.path.rsplit("/", 1)[0],
                    attempt,
                    _reason(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except TimeoutError:
                raise Unreachable(
                    "the control plane did not answer in time", maybe_read=True
                ) from None
            except aiohttp.ClientError as exc:
                raise Unreachable(
                    f"the connection failed after the request was sent ({_reason(exc)})",
                    maybe_read=True,
                ) from None
            if retry_in is not None and loop.time() + retry_in < ends:
                log.warning(
                    "%s %s attempt %d got HTTP %d; retrying in %.1fs",
                    method,
                    url.path.rsplit("/", 1)[0],
                    attempt,
                    reply.status,
                    retry_in,
                )
                await asyncio.sleep(retry_in)
                continue
            return reply


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """Read the whole answer, however it is chunked, but never more than MAX_ANSWER_BYTES."""
    raw = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        raw += chunk
        if len(raw) > MAX_ANSWER_BYTES:
            return bytes(raw[:MAX_ANSWER_BYTES]), True  # what is past this we cannot use
    return bytes(raw), False


def _retry_after(value: str | None) -> float:
    """Read Retry-After (seconds or an HTTP date); a missing or bad one means one second."""
    if value is None:
        return 1.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


def _reason(exc: BaseException) -> str:
    # An OSError's strerror names the failure without echoing request data.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.strerror or type(exc).__name__})"
    return type(exc).__name__
