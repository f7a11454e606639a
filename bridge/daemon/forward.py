"""The forward: POST {code, state} to the control plane once, and classify its answer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from pydantic import BaseModel, ValidationError
from yarl import URL

from bridge import __version__
from bridge.daemon.config import Credentials
from bridge.daemon.model import JSON, FailureCode, Outcome, Status

log = logging.getLogger(__name__)

USER_AGENT = f"oauth-bridge/{__version__}"
# A control plane answer bigger than this is not one we can make sense of.
MAX_ANSWER_BYTES = 1 << 20
# Waits between attempts after a failed connect; 429/503 use Retry-After instead.
CONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(BaseModel):
    """The control plane's 422 body (FastAPI), as its OpenAPI document describes it."""

    detail: list[ValidationErrorItem] = []


class ControlPlane:
    """The control plane's callback endpoint, reached through one keep-alive session."""

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
        # Built once: the headers are the same for every forward.
        self.headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if credentials.api_key:
            self.headers["X-Api-Key"] = credentials.api_key
        if credentials.workspace_id:
            self.headers["X-Tenant-Id"] = credentials.workspace_id
        if credentials.bearer_token:
            self.headers["Authorization"] = f"Bearer {credentials.bearer_token}"
        if proxy_auth is not None:
            # Credentials in the proxy's URL (http://user:pass@proxy:3128): on the CONNECT
            # for https, on the request itself for plain http (it goes to the proxy whole).
            if self.base_url.scheme == "https":
                self.proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}
            else:
                self.headers["Proxy-Authorization"] = proxy_auth.encode()

    def callback_url(self, provider_id: str) -> URL:
        # `/` joins one segment: yarl percent-encodes the provider id, slashes included.
        return self.base_url / "v2" / "auth" / "callback" / provider_id

    async def forward(self, *, provider_id: str, code: str, state: str) -> Outcome:
        """Send the code once; retry only where it cannot have reached the control plane."""
        url = self.callback_url(provider_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_seconds
        attempt = 0
        while True:
            attempt += 1
            retry_in: float | None = None
            try:
                async with self.session.post(
                    url,
                    json={"code": code, "state": state},
                    headers=self.headers,
                    allow_redirects=False,
                    proxy=self.proxy,
                    proxy_headers=self.proxy_headers,
                ) as response:
                    status = response.status
                    raw = await _read_capped(response)
                    content_type = response.content_type
                    if status in (429, 503):
                        retry_in = _retry_after(response.headers.get("Retry-After"))
            except (aiohttp.ClientSSLError, aiohttp.ClientHttpProxyError) as exc:
                return _unreachable(f"{type(exc).__name__}: {_reason(exc)}")
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                # Nothing was sent: the connection (or DNS look-up) itself failed.
                delay = CONNECT_BACKOFF[min(attempt - 1, len(CONNECT_BACKOFF) - 1)]
                if loop.time() + delay >= deadline:
                    return _unreachable(_reason(exc))
                log.warning(
                    "forward attempt %d could not connect (%s); retrying in %.1fs",
                    attempt,
                    _reason(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            except TimeoutError:
                return _unreachable(
                    "the control plane did not answer in time; the code may have reached it, "
                    "so it was not sent again"
                )
            except aiohttp.ClientError as exc:
                return _unreachable(
                    f"the connection failed after the code was sent ({_reason(exc)}); "
                    "it was not sent again"
                )
            if retry_in is not None and loop.time() + retry_in < deadline:
                log.warning(
                    "forward attempt %d got HTTP %d; retrying in %.1fs", attempt, status, retry_in
                )
                await asyncio.sleep(retry_in)
                continue
            return classify(status, raw, content_type)


def classify(status: int, raw: bytes, content_type: str) -> Outcome:
    """Turn the control plane's answer into a login outcome, whatever its body holds."""
    body, is_json = _parse_json(raw)
    if 200 <= status < 300:
        if raw.strip() and not is_json:
            return _failed(
                FailureCode.CONTROL_PLANE_ERROR,
                status,
                f"The control plane answered HTTP {status} with a non-JSON body ({content_type}); "
                "a proxy or captive portal may be in the way.",
            )
        return Outcome(
            Status.SUCCEEDED,
            stored={"control_plane_status": status},
            answer={"control_plane_body": body},
        )
    if status in (401, 403):
        return _failed(
            FailureCode.CONTROL_PLANE_REJECTED,
            status,
            f"The control plane refused the credentials (HTTP {status}). Check the API key "
            "(LANGSMITH_API_KEY or api_key_file), the workspace (LANGSMITH_WORKSPACE_ID) "
            "and the bearer token (OAUTH_BRIDGE_BEARER_TOKEN or bearer_token_file).",
        )
    if status == 422:
        detail: JSON = None
        if is_json:
            try:
                detail = HTTPValidationError.model_validate(body).model_dump()
            except ValidationError:
                detail = body
        return _failed(
            FailureCode.VALIDATION_ERROR,
            status,
            "The control plane rejected the callback as invalid (HTTP 422).",
            detail=detail,
        )
    if 400 <= status < 500:
        return _failed(
            FailureCode.CONTROL_PLANE_REJECTED,
            status,
            f"The control plane rejected the callback (HTTP {status}).",
            detail=body if is_json else None,
        )
    if status >= 500:
        return _failed(
            FailureCode.CONTROL_PLANE_ERROR,
            status,
            f"The control plane failed (HTTP {status}); the code was not sent again.",
            detail=body if is_json else None,
        )
    return _failed(
        FailureCode.CONTROL_PLANE_ERROR,
        status,
        f"The control plane answered with an unexpected HTTP {status}.",
    )


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """Read the whole answer, however it is chunked, but never more than MAX_ANSWER_BYTES."""
    raw = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        raw += chunk
        if len(raw) >= MAX_ANSWER_BYTES:
            break  # what is past this cannot be an answer we understand
    return bytes(raw[:MAX_ANSWER_BYTES])


def _failed(code: FailureCode, status: int, message: str, *, detail: JSON = None) -> Outcome:
    answer: dict[str, JSON] = {} if detail is None else {"detail": detail}
    return Outcome(
        Status.FAILED,
        stored={"error": code.value, "message": message, "control_plane_status": status},
        answer=answer,
    )


def _unreachable(reason: str) -> Outcome:
    return Outcome(
        Status.FAILED,
        stored={
            "error": FailureCode.CONTROL_PLANE_UNREACHABLE.value,
            "message": f"The control plane could not be reached: {reason}.",
        },
    )


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw.strip():
        return None, False
    try:
        return json.loads(raw), True
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, False


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
