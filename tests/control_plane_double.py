"""A control-plane double: a real aiohttp app implementing POST /v2/auth/callback/{provider_id}."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "test-api-key-0123"
WORKSPACE_ID = "ws-42"
BEARER = "test-bearer-token-0456"


@dataclass
class Call:
    provider_id: str
    host: str
    raw_path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """What the double answers next; tests change it between calls."""

    # (status, headers, body bytes or JSON) answers to pop, one per call; then `default`.
    queue: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    hang: bool = False
    # Seconds to take over each answer: a slow control plane.
    delay: float = 0.0
    # Read the request, then close the connection without answering.
    drop: bool = False
    # Send the success body in two writes with a pause between, as a slow network does.
    split_body: bool = False


class ControlPlaneDouble:
    """Records every call, checks the auth headers, validates the body like FastAPI."""

    def __init__(
        self,
        *,
        api_key: str | None = API_KEY,
        workspace_id: str | None = WORKSPACE_ID,
        bearer: str | None = BEARER,
    ) -> None:
        self.api_key = api_key
        self.workspace_id = workspace_id
        self.bearer = bearer
        self.calls: list[Call] = []
        self.script = Script()
        self.called = asyncio.Event()
        self.release = asyncio.Event()  # set to let a hanging answer go
        self.runner: web.AppRunner | None = None
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v2/auth/callback/{provider_id}", self.callback)
        return app

    async def start(self) -> None:
        await self.start_on(0)

    async def start_on(self, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self.runner = runner
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.script.queue.append((status, headers or {}, body))

    async def callback(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.calls.append(
            Call(
                provider_id=request.match_info["provider_id"],
                host=request.host,
                raw_path=request.raw_path,
                headers=dict(request.headers),
                body=body,
            )
        )
        self.called.set()
        if self.script.hang:
            await self.release.wait()
        if self.script.drop and request.transport is not None:
            request.transport.close()
            return web.Response(status=204)  # never reaches the closed connection
        if self.script.delay:
            await asyncio.sleep(self.script.delay)  # the slowness under test, not a wait
        if not self._authorized(request):
            return web.json_response({"detail": "Not authenticated"}, status=401)
        if self.script.queue:
            status, headers, answer = self.script.queue.pop(0)
            if isinstance(answer, bytes | str):
                return web.Response(status=status, headers=headers, body=answer)
            return web.json_response(answer, status=status, headers=headers)
        problems = validation_problems(body)
        if problems:
            return web.json_response({"detail": problems}, status=422)
        body = json.dumps({"connected": True, "provider_id": request.match_info["provider_id"]})
        if self.script.split_body:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(body[:10].encode())
            await asyncio.sleep(0.05)  # a slow network, not a wait for a condition
            await response.write(body[10:].encode())
            await response.write_eof()
            return response
        return web.Response(text=body, content_type="application/json")

    def _authorized(self, request: web.Request) -> bool:
        expected = {
            "X-Api-Key": self.api_key,
            "X-Tenant-Id": self.workspace_id,
            "Authorization": f"Bearer {self.bearer}" if self.bearer else None,
        }
        return all(request.headers.get(k) == v for k, v in expected.items() if v is not None)


def validation_problems(body: Any) -> list[dict[str, Any]]:
    """Validate OAuthFinalizeRequest the way FastAPI does, echoing the input as it does."""
    if not isinstance(body, dict):
        return [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary",
                "input": body,
            }
        ]
    problems = []
    for name in ("code", "state"):
        if name not in body:
            problems.append(
                {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": body}
            )
        elif not isinstance(body[name], str):
            problems.append(
                {
                    "type": "string_type",
                    "loc": ["body", name],
                    "msg": "Input should be a valid string",
                    "input": body[name],
                }
            )
    return problems
