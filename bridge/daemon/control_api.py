"""The control API on the Unix socket: how desktop tools register, wait for and cancel logins."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError
from yarl import URL

from bridge import __version__
from bridge.daemon import auth_service
from bridge.daemon.auth_service import CallFailed
from bridge.daemon.callback import NOT_NOW, REPEAT_WAIT_MARGIN, handle_callback
from bridge.daemon.config import Credentials
from bridge.daemon.control_schema import (
    AgentAuthLoginRequest,
    AllowLoopbackRequest,
    CallbackRequest,
    LoginRequest,
    one_segment,
)
from bridge.daemon.model import Callback, FailureCode, Login, NewLogin, Outcome, Status, rfc3339
from bridge.daemon.model import Credentials as Whose
from bridge.daemon.services import SERVICES, Services, services
from bridge.daemon.store import DuplicateState, PendingLimitReached, new_secret, secret_matches
from bridge.fingerprint import fingerprint

MAX_WAIT_SECONDS = 300.0


def problem(status: int, error: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "message": message, **extra}, status=status)


def peer_uid(request: web.Request) -> int | None:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


@web.middleware
async def same_user_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any peer that is not this user, even if the socket's mode let it in."""
    if peer_uid(request) != os.getuid():
        return problem(403, "forbidden", "the control socket serves its owner only")
    return await handler(request)


def caller_credentials(bridge: Services, request: web.Request) -> Credentials | None:
    """Return the caller's LangSmith credentials, or None when they are the daemon's own.

    A tool sends the control plane's own headers; each one given replaces the
    daemon's. Held in memory only: never logged, never stored.
    """
    api_key = request.headers.get("X-Api-Key") or None
    workspace_id = request.headers.get("X-Tenant-Id") or None
    authorization = request.headers.get("Authorization") or None
    bearer_token = None
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refused(
                422, "validation_error", "the Authorization header must be 'Bearer <token>'"
            )
        bearer_token = token.strip()
    if api_key is None and workspace_id is None and bearer_token is None:
        return None
    daemon = bridge.config.credentials
    merged = Credentials(
        api_key=api_key or daemon.api_key,
        bearer_token=bearer_token or daemon.bearer_token,
        workspace_id=workspace_id or daemon.workspace_id,
    )
    same = (merged.api_key, merged.bearer_token, merged.workspace_id) == (
        daemon.api_key,
        daemon.bearer_token,
        daemon.workspace_id,
    )
    # The daemon's own, given again: such a login survives a restart as any other.
    return None if same else merged


def for_creator(request: web.Request, login: Login) -> bool:
    """Say whether the request showed the login's secret: only then may it read the token."""
    shown = request.headers.get("X-Login-Secret")
    if shown is None:
        return False
    if not secret_matches(login, shown):
        raise _refused(403, "forbidden", "X-Login-Secret is not this login's secret")
    return True


_ERRORS: dict[int, type[web.HTTPException]] = {
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    422: web.HTTPUnprocessableEntity,
}


def _refused(status: int, error: str, message: str) -> web.HTTPException:
    """Return a refusal to raise: the control API's JSON error shape."""
    return _ERRORS[status](
        text=json.dumps({"error": error, "message": message}), content_type="application/json"
    )


def provider_in_path(request: web.Request) -> str:
    """Return the path's provider id, refused (422) unless it is one path segment."""
    provider_id = request.match_info["provider_id"]
    try:
        return one_segment(provider_id)
    except ValueError as exc:
        raise _refused(422, "validation_error", f"provider_id: {exc}") from None


M = TypeVar("M", bound=BaseModel)


async def read_body(request: web.Request, model: type[M]) -> M:
    """Validate a JSON body, or answer 422 with pydantic's errors as ``detail``."""
    return parse_body(await request.read(), model)


def parse_body(raw: bytes, model: type[M]) -> M:
    """Validate ``raw`` as ``model``, or raise a 422 with pydantic's errors as ``detail``."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        detail = exc.errors(include_url=False, include_input=False, include_context=False)
        raise web.HTTPUnprocessableEntity(
            text=json.dumps(
                {
                    "error": "validation_error",
                    "message": "the request body is not valid: "
                    + "; ".join(
                        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                        for e in detail
                    ),
                    "detail": detail,
                }
            ),
            content_type="application/json",
        ) from None


def find(bridge: Services, request: web.Request) -> Login:
    login = bridge.logins.get(request.match_info["login_id"])
    if login is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": "not_found", "message": "no login has this id"}),
            content_type="application/json",
        )
    return login


async def register(request: web.Request) -> web.Response:
    bridge = services(request.app)
    if bridge.logins.stopping:
        return problem(503, "stopping", "oauth-bridge is stopping; try again once it is back")
    raw = await request.read()
    if _names_scopes(raw):
        return await start_agent_auth(bridge, request, parse_body(raw, AgentAuthLoginRequest))
    body = parse_body(raw, LoginRequest)
    credentials = caller_credentials(bridge, request)
    secret = new_secret()
    try:
        login = bridge.logins.register(
            NewLogin(
                provider_id=body.provider_id,
                state=body.state,
                redirect_uri=bridge.redirect_uri(body.provider_id),
                ttl_seconds=body.ttl_seconds,
                secret=secret,
                expected_issuer=body.expected_issuer,
                require_issuer=body.require_issuer,
                client_name=body.client_name,
                credentials=Whose.DAEMON if credentials is None else Whose.CALLER,
            ),
            credentials=credentials,
        )
    except DuplicateState:
        known = bridge.logins.find_by_state(body.state)
        if known is None:  # swept between the insert and this look-up
            return problem(409, "conflict", "this state is already registered")
        hint = (
            f"cancel it with 'oauth-bridge cancel {known.id}', or "
            if not known.status.terminal
            else ""
        )
        return problem(
            409,
            "conflict",
            f"this state is already registered, for login {known.id} ({known.provider_id}, "
            f"{known.status.value}); {hint}get a new authorization URL: a state is used once",
            login=known.to_json(),
        )
    except PendingLimitReached:
        return too_many_pending(bridge)
    return created(login, secret=secret)


def created(login: Login, *, secret: str, **extra: str) -> web.Response:
    """Answer 201 with the login, its secret and what else only its creator gets."""
    body = {**login.to_json(for_creator=True), "secret": secret, **extra}
    return web.json_response(
        body, status=201, headers={"Location": f"/v1/logins/{quote(login.id, safe='')}"}
    )


def too_many_pending(bridge: Services) -> web.Response:
    return problem(
        503,
        "too_many_pending",
        f"{bridge.config.settings.pending_limit} logins are already pending; "
        "finish or cancel some first",
    )


def _names_scopes(raw: bytes) -> bool:
    """Say whether a registration is an Agent Auth one (``scopes`` instead of ``state``)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return False
    return isinstance(body, dict) and "scopes" in body


async def start_agent_auth(
    bridge: Services, request: web.Request, body: AgentAuthLoginRequest
) -> web.Response:
    """Have the control plane start the login; register it, or answer 502 and register nothing."""
    credentials = caller_credentials(bridge, request)
    if bridge.logins.store.pending_count >= bridge.config.settings.pending_limit:
        return too_many_pending(bridge)  # before asking: an auth request must not be orphaned
    secret = new_secret()
    try:
        login, auth_url = await bridge.agent_auth.start(
            provider_id=body.provider_id,
            scopes=body.scopes,
            ttl_seconds=body.ttl_seconds,
            secret=secret,
            user_id=body.user_id,
            agent_id=body.agent_id,
            force_new=body.force_new,
            client_name=body.client_name,
            callback=Callback(body.callback),
            credentials=credentials,
        )
    except CallFailed as exc:
        return web.json_response(exc.to_json(), status=502)
    except DuplicateState:
        return problem(
            502,
            "control_plane_error",
            "The control plane answered with a state that is already registered.",
        )
    except PendingLimitReached:
        return too_many_pending(bridge)
    if auth_url is None:
        return created(login, secret=secret)
    # Here only: no other answer, page or log has the authorization URL. A loopback
    # login's browser opens the trampoline instead (no state on any command line); a
    # hosted one's may be on another machine, which cannot reach ours.
    open_url = (
        bridge.trampoline_url(bridge.trampolines.issue(login.id, auth_url))
        if login.callback is Callback.LOOPBACK
        else auth_url
    )
    return created(login, secret=secret, auth_url=auth_url, open_url=open_url)


async def allow_loopback(request: web.Request) -> web.Response:
    """Add this daemon's callback to a provider's allowed redirect URIs on the control plane."""
    bridge = services(request.app)
    provider_id = provider_in_path(request)
    raw = await request.read()
    # The body is optional: no body is {"dry_run": false}.
    body = parse_body(raw if raw.strip() else b"{}", AllowLoopbackRequest)
    credentials = caller_credentials(bridge, request)
    redirect_uri = bridge.redirect_uri(provider_id)
    try:
        provider = await auth_service.get_provider(
            bridge.control_plane, provider_id, credentials=credentials
        )
        allowed = list(provider.allowed_redirect_uris or [])
        changed = redirect_uri not in allowed
        if changed:
            allowed.append(redirect_uri)
            if not body.dry_run:
                provider = await auth_service.set_redirect_uris(
                    bridge.control_plane, provider_id, allowed, credentials=credentials
                )
                allowed = list(provider.allowed_redirect_uris or allowed)
    except CallFailed as exc:
        return web.json_response(exc.to_json(), status=502)
    return web.json_response(
        {
            "provider_id": provider_id,
            "redirect_uri": redirect_uri,
            "allowed_redirect_uris": allowed,
            "changed": changed,
            "dry_run": body.dry_run,
        }
    )


async def show(request: web.Request) -> web.Response:
    bridge = services(request.app)
    login = find(bridge, request)
    raw_wait = request.query.get("wait")
    if raw_wait is not None:
        try:
            wait = float(raw_wait)
        except ValueError:
            wait = -1.0
        if not wait >= 0:  # also refuses NaN
            return problem(422, "validation_error", "wait must be a number of seconds >= 0")
        login = await bridge.logins.wait_terminal(login.id, min(wait, MAX_WAIT_SECONDS)) or login
    return web.json_response(login.to_json(for_creator=for_creator(request, login)))


async def cancel(request: web.Request) -> web.Response:
    bridge = services(request.app)
    login = find(bridge, request)
    creator = for_creator(request, login)
    cancelled = Outcome(Status.CANCELLED, stored={"message": "The login was cancelled."})
    if not bridge.logins.finish(login.id, cancelled, current=Status.PENDING):
        login = bridge.logins.get(login.id) or login
        return problem(
            409,
            "conflict",
            f"the login is {login.status.value}, so it cannot be cancelled",
            login=login.to_json(for_creator=creator),
        )
    bridge.trampolines.forget(login.id)
    return web.json_response(find(bridge, request).to_json(for_creator=creator))


async def list_logins(request: web.Request) -> web.Response:
    bridge = services(request.app)
    bridge.logins.expire_due()
    return web.json_response({"logins": [login.to_json() for login in bridge.logins.store.all()]})


async def complete(request: web.Request) -> web.Response:
    """Process a redirect URL pasted by the user exactly as if the browser had brought it."""
    bridge = services(request.app)
    body = await read_body(request, CallbackRequest)
    try:
        url = URL(body.url.strip())
        host = url.raw_host or ""
        port = url.explicit_port
    except (ValueError, TypeError):
        return problem(400, "bad_url", "this is not a URL")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    parts = url.path.split("/")
    if (
        url.scheme != "http"
        or authority.lower() not in bridge.allowed_hosts
        or len(parts) != 3
        or parts[1] != "callback"
        or not parts[2]
    ):
        return problem(
            400,
            "bad_url",
            f"this is not a callback address of this oauth-bridge: expected "
            f"{bridge.url}/callback/<provider>?code=...&state=...",
        )
    outcome = await handle_callback(
        logins=bridge.logins,
        control_plane=bridge.control_plane,
        agent_auth=bridge.agent_auth,
        provider_id=parts[2],
        params=url.query,
        wait_seconds=bridge.callback_wait_seconds + REPEAT_WAIT_MARGIN,
    )
    if outcome.reason in NOT_NOW:
        return problem(503, outcome.reason.replace("-", "_"), outcome.message)
    if outcome.login is None:
        status = 400 if outcome.page_status == "invalid" else 404
        return problem(status, "bad_url" if status == 400 else "not_found", outcome.message)
    return web.json_response(outcome.login.to_json())


async def status(request: web.Request) -> web.Response:
    """Describe the daemon for ``oauth-bridge status``: never a secret."""
    bridge = services(request.app)
    bridge.logins.expire_due()
    credentials = bridge.config.credentials
    now = time.time()
    return web.json_response(
        {
            "pid": os.getpid(),
            "url": bridge.url,
            "control_socket": str(bridge.paths.control_socket),
            "version": __version__,
            "started_at": rfc3339(bridge.started_at),
            "uptime_seconds": round(now - bridge.started_at, 3),
            "pending": bridge.logins.store.pending_count,
            # Without userinfo: a URL's password is no one's business in a bug report.
            "control_plane_url": str(
                URL(str(bridge.config.settings.control_plane_url)).with_user(None)
            ),
            "credentials": bridge.config.credentials.sources,
            "api_key_fingerprint": (
                fingerprint(credentials.api_key) if credentials.api_key else None
            ),
            "log": bridge.log_location,
            "recent_logins": [login.to_json() for login in bridge.logins.store.recent(10)],
        }
    )


async def check_control_plane(request: web.Request) -> web.Response:
    """For ``doctor``: can the control plane be reached, does it take our credentials, and
    does each provider allow this daemon's callback? A cheap read, never a login."""
    bridge = services(request.app)
    answer: dict[str, Any] = {
        "control_plane_url": str(bridge.config.settings.control_plane_url),
        "reachable": True,
        "accepted": True,
        "message": "",
        "providers": [],
    }
    try:
        providers = await auth_service.list_providers(
            bridge.control_plane, credentials=caller_credentials(bridge, request)
        )
    except CallFailed as exc:
        answer["reachable"] = exc.error is not FailureCode.CONTROL_PLANE_UNREACHABLE
        answer["accepted"] = False
        answer["message"] = exc.message
        answer["control_plane_status"] = exc.control_plane_status
        return web.json_response(answer)
    for provider in providers:
        listed = provider.allowed_redirect_uris
        redirect_uri = bridge.redirect_uri(provider.provider_id)
        answer["providers"].append(
            {
                "provider_id": provider.provider_id,
                "redirect_uri": redirect_uri,
                # None: this deployment does not tell (no allowed_redirect_uris field).
                "allows_this_daemon": None if listed is None else redirect_uri in listed,
            }
        )
    return web.json_response(answer)


async def start_browser_check(request: web.Request) -> web.Response:
    """For ``doctor``: a one-time address a browser on this machine can open."""
    bridge = services(request.app)
    token = bridge.browser_checks.issue()
    return web.json_response({"url": f"{bridge.url}/self-test/{token}", "token": token})


async def browser_check(request: web.Request) -> web.Response:
    """Say whether a browser opened the self-test address (long-poll with ?wait=)."""
    bridge = services(request.app)
    token = request.match_info["token"]
    try:
        wait = min(float(request.query.get("wait", "0")), MAX_WAIT_SECONDS)
    except ValueError:
        wait = 0.0
    seen = await bridge.browser_checks.wait_seen(token, max(wait, 0.0))
    return web.json_response({"seen": seen})


async def list_connections(request: web.Request) -> web.Response:
    """Each provider of the control plane, and whether the caller's user has a token for it."""
    bridge = services(request.app)
    credentials = caller_credentials(bridge, request)
    try:
        providers = await auth_service.list_providers(bridge.control_plane, credentials=credentials)
        connected = await asyncio.gather(
            *(
                auth_service.has_token(
                    bridge.control_plane, provider.provider_id, credentials=credentials
                )
                for provider in providers
            )
        )
    except CallFailed as exc:
        return web.json_response(exc.to_json(), status=502)
    return web.json_response(
        {
            "connections": [
                {"provider_id": p.provider_id, "name": p.name, "connected": has}
                for p, has in zip(providers, connected, strict=True)
            ]
        }
    )


async def disconnect(request: web.Request) -> web.Response:
    """Revoke the caller's user's tokens for a provider."""
    bridge = services(request.app)
    provider_id = provider_in_path(request)
    try:
        await auth_service.revoke_tokens(
            bridge.control_plane,
            provider_id,
            credentials=caller_credentials(bridge, request),
        )
    except CallFailed as exc:
        return web.json_response(exc.to_json(), status=502)
    return web.json_response({"provider_id": provider_id, "connected": False})


async def _touch(request: web.Request, response: web.StreamResponse) -> None:
    services(request.app).touch()


def create_control_app(bridge: Services) -> web.Application:
    """Build the control API app; it does no I/O until served."""
    app = web.Application(middlewares=[same_user_only])
    app[SERVICES] = bridge
    app.on_response_prepare.append(_touch)
    app.router.add_post("/v1/logins", register)
    app.router.add_get("/v1/logins", list_logins)
    app.router.add_get("/v1/logins/{login_id}", show)
    app.router.add_delete("/v1/logins/{login_id}", cancel)
    app.router.add_post("/v1/callbacks", complete)
    app.router.add_get("/v1/status", status)
    app.router.add_post("/v1/providers/{provider_id}/allow-loopback", allow_loopback)
    app.router.add_get("/v1/connections", list_connections)
    app.router.add_delete("/v1/connections/{provider_id}", disconnect)
    app.router.add_get("/v1/checks/control-plane", check_control_plane)
    app.router.add_post("/v1/checks/browser", start_browser_check)
    app.router.add_get("/v1/checks/browser/{token}", browser_check)
    return app
