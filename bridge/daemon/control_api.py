"""The control API on the Unix socket: how desktop tools register, wait for and cancel logins."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import re
import time
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from pydantic import BaseModel, ValidationError
from yarl import URL

from bridge import __version__
from bridge.daemon import auth_service
from bridge.daemon.auth_service import CallFailed
from bridge.daemon.callback import NOT_NOW, REPEAT_WAIT_MARGIN, handle_callback
from bridge.daemon.config import Credentials
from bridge.daemon.control_schema import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    MAX_WAIT_SECONDS,
    AgentAuthLoginRequest,
    AllowLoopbackRequest,
    CallbackRequest,
    LoginRequest,
    Refusal,
    one_segment,
)
from bridge.daemon.model import Callback, FailureCode, Login, NewLogin, Outcome, Status, rfc3339
from bridge.daemon.model import Credentials as Whose
from bridge.daemon.services import SERVICES, Services, services
from bridge.daemon.store import DuplicateState, PendingLimitReached, new_secret, secret_matches
from bridge.fingerprint import fingerprint
from bridge.platform import own_identity, peer_identity, same_user

log = logging.getLogger(__name__)

# How the daemon's refusals of its own are named, by HTTP status (aiohttp's 404, 405, 413).
_OWN_REFUSALS: dict[int, Refusal] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}
INTERNAL_ERROR = (
    "oauth-bridge could not answer this request because of an error of its own; its log "
    "has the details."
)


def problem(status: int, error: Refusal, message: str, **extra: Any) -> web.Response:
    """Answer with the control API's one error shape: ``{"error", "message", ...}``."""
    return web.json_response({"error": error, "message": message, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Make every answer that is not 2xx a problem, aiohttp's own refusals included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise  # a redirect, or one of ours: already in shape
        return _as_problem(request, exc.status, exc.headers.get("Allow"))
    except ConnectionError:
        raise  # the caller left: no one reads an answer, and it is no fault of ours
    except Exception:
        route = request.match_info.route.resource
        where = route.canonical if route is not None else "an unknown route"
        log.exception("control API: %s %s failed", request.method, where)
        return problem(500, "internal_error", INTERNAL_ERROR)
    if (
        isinstance(response, web.Response)
        and response.status >= 400
        and response.content_type != "application/json"
    ):
        return _as_problem(request, response.status, response.headers.get("Allow"))
    return response


def _as_problem(request: web.Request, status: int, allow: str | None) -> web.Response:
    if status == 404:
        message = f"There is no route {request.method} {request.path} in the control API."
    elif status == 405:
        message = f"{request.path} does not take {request.method}; it takes {allow or 'none'}."
    elif status == 413:
        message = f"The body is over {MAX_BODY_BYTES} bytes."
    else:
        message = "oauth-bridge could not take this request."
    error = _OWN_REFUSALS.get(status, "internal_error" if status >= 500 else "bad_request")
    answer = problem(status, error, message)
    if allow is not None:
        answer.headers["Allow"] = allow
    return answer


def peer_uid(request: web.Request) -> int | str | None:
    """Who is at the other end: a uid (SO_PEERCRED) or, on Windows, the client's SID."""
    return peer_identity(request.transport)


@web.middleware
async def same_user_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse any peer that is not this user, even if the socket's mode let it in."""
    if not same_user(peer_uid(request), own_identity()):
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


def _refused(status: int, error: Refusal, message: str, **extra: Any) -> web.HTTPException:
    """Return a refusal to raise: the control API's JSON error shape."""
    return _ERRORS[status](
        text=json.dumps({"error": error, "message": message, **extra}),
        content_type="application/json",
    )


def provider_in_path(request: web.Request) -> str:
    """Return the path's provider id, refused (422) unless it is one path segment."""
    provider_id = request.match_info["provider_id"]
    try:
        return one_segment(provider_id)
    except ValueError as exc:
        raise _refused(422, "validation_error", f"provider_id: {exc}") from None


M = TypeVar("M", bound=BaseModel)


# A JSON string (its escapes included), and what is left once strings are gone: brackets
# count +1 opening and -1 (0xff as a signed byte) closing, everything else is dropped.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NESTING = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_A_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nests_deeper_than(raw: bytes, limit: int) -> bool:
    """Say whether the JSON text ``raw`` nests arrays and objects more than ``limit`` deep.

    Counted before parsing: a parser's recursion is what a deep body attacks. Linear, and
    in C but for the regular expression: a 1 MiB body takes milliseconds.
    """
    steps = _JSON_STRING.sub(b"", raw).translate(_NESTING, _NOT_A_BRACKET)
    if len(steps) <= limit:
        return False
    return max(itertools.accumulate(memoryview(steps).cast("b"))) > limit


async def read_json(request: web.Request, *, optional: bool = False) -> bytes:
    """Read a JSON body, or refuse it (422) unless it is application/json of sane depth.

    An empty body is ``{}`` where the body is ``optional``; elsewhere the model refuses it.
    A body over MAX_BODY_BYTES is aiohttp's 413, which ``json_errors`` puts in shape.
    """
    raw = await request.read()
    if not raw.strip():
        return b"{}" if optional else raw
    if request.content_type != "application/json":
        given = request.headers.get("Content-Type")
        raise _refused(
            422,
            "unsupported_media_type",
            "the body must be JSON sent with 'Content-Type: application/json' ("
            + (f"not {given!r}" if given else "no Content-Type was given")
            + ")",
        )
    if nests_deeper_than(raw, MAX_JSON_DEPTH):
        raise _refused(
            422, "validation_error", f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        )
    return raw


async def read_body(request: web.Request, model: type[M]) -> M:
    """Validate a JSON body, or answer 422 with pydantic's errors as ``detail``."""
    return parse_body(await read_json(request), model)


def parse_body(raw: bytes, model: type[M]) -> M:
    """Validate ``raw`` as ``model``, or raise a 422 with pydantic's errors as ``detail``."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        detail = exc.errors(include_url=False, include_input=False, include_context=False)
        raise _refused(
            422,
            "validation_error",
            "the request body is not valid: "
            + "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in detail
            ),
            detail=detail,
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
    raw = await read_json(request)
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
    # The body is optional: no body is {"dry_run": false}.
    body = parse_body(await read_json(request, optional=True), AllowLoopbackRequest)
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


STATUSES = tuple(status.value for status in Status)


def one_query_value(request: web.Request, name: str) -> str | None:
    """Return a query parameter given at most once (422 if more), or None."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise _refused(422, "validation_error", f"{name} may be given once")
    return values[0] if values else None


async def list_logins(request: web.Request) -> web.Response:
    """Every login the daemon holds, oldest first: ?status=S and ?provider_id=P filter them."""
    bridge = services(request.app)
    status = one_query_value(request, "status")
    if status is not None and status not in STATUSES:
        raise _refused(422, "validation_error", f"status must be one of {', '.join(STATUSES)}")
    provider_id = one_query_value(request, "provider_id")
    if provider_id is not None:
        try:
            one_segment(provider_id)
        except ValueError as exc:
            raise _refused(422, "validation_error", f"provider_id: {exc}") from None
    bridge.logins.expire_due()
    return web.json_response(
        {
            "logins": [
                login.to_json()
                for login in bridge.logins.store.all()
                if (status is None or login.status.value == status)
                and (provider_id is None or login.provider_id == provider_id)
            ]
        }
    )


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
    # Shielded: a paste whose tool goes away mid-way must still consume and forward
    # exactly as the browser's would (the control socket cancels a gone caller's handler).
    outcome = await asyncio.shield(
        handle_callback(
            logins=bridge.logins,
            control_plane=bridge.control_plane,
            agent_auth=bridge.agent_auth,
            provider_id=parts[2],
            params=url.query,
            wait_seconds=bridge.callback_wait_seconds + REPEAT_WAIT_MARGIN,
        )
    )
    if outcome.reason in NOT_NOW:
        not_now: Refusal = "stopping" if outcome.reason == "stopping" else "no_resources"
        return problem(503, not_now, outcome.message)
    if outcome.login is None:
        if outcome.page_status == "invalid":
            return problem(400, "bad_url", outcome.message)
        return problem(404, "not_found", outcome.message)
    login = outcome.login
    if login.status in (Status.CANCELLED, Status.EXPIRED):
        # Either ends only a pending login, so no callback ever counted for this one:
        # there is no outcome to repeat, and no pending login matches.
        return problem(
            404,
            "not_found",
            f"No pending login has this state: login {login.id} was {login.status.value} "
            "before any callback came.",
            login=login.to_json(),
        )
    # A login that reached an outcome: this paste, or a repeat of a callback (never
    # forwarded again).
    return web.json_response(login.to_json())


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
    # Lenient on purpose, as the document says: what is not a number of seconds is 0.
    try:
        wait = float(request.query.get("wait", "0"))
    except ValueError:
        wait = 0.0
    wait = 0.0 if math.isnan(wait) else min(max(wait, 0.0), MAX_WAIT_SECONDS)
    seen = await bridge.browser_checks.wait_seen(token, wait)
    return web.json_response({"seen": seen})


async def openapi_document(request: web.Request) -> web.Response:
    """The control API's OpenAPI document: the one committed in docs/, built from the models."""
    # Here: its answer models and JSON Schema generation are for this request alone, not
    # for every daemon's start.
    from bridge.daemon.openapi import served

    return web.Response(body=served(), content_type="application/json")


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
    # json_errors first: it puts in shape whatever comes back, the peer check's 403 included.
    app = web.Application(middlewares=[json_errors, same_user_only], client_max_size=MAX_BODY_BYTES)
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
    app.router.add_get("/v1/openapi.json", openapi_document)
    return app


class ControlProtocol(RequestHandler):
    """One connection to the control socket: aiohttp's own refusals in the API's shape too.

    A request aiohttp cannot parse (a bad request line, a header too long) never reaches
    the app and its middleware: aiohttp answers it itself, in plain text, unless told here.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: it logs, closes the connection after the answer, and refuses to
        # answer twice; its plain-text answer is replaced by ours, with the same status.
        super().handle_error(request, status, exc, message)
        if status >= 500:
            return problem(status, "internal_error", INTERNAL_ERROR)
        return problem(status, "bad_request", "oauth-bridge could not read this request as HTTP.")


class ControlServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ControlProtocol(self, loop=self._loop, **self._kwargs)


class ControlRunner(web.AppRunner):
    """The control socket's runner: the app behind ControlProtocol's connections."""

    async def _make_server(self) -> web.Server:
        app_server = await super()._make_server()
        return ControlServer(
            app_server.request_handler, request_factory=app_server.request_factory, **self._kwargs
        )
