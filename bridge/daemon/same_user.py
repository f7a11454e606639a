"""Refuse another local user's request for a login's addresses: it must not take a login over.

The TCP port is open to every process on this machine. A callback or trampoline request
whose connection another user opened (found in /proc/net/tcp by ``bridge.netowner``) is
refused before its handler runs, so it consumes nothing. Root is let in: a tunnel that
brings the browser's connection in (docker-proxy, WSL's relay) may run as root. Under
the sandbox drop-in (PrivateUsers=) root reads as the overflow uid, as every other user
does, so there such a tunnel is refused too.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bridge.netowner import GONE
from bridge.platform import effective_uid, tcp_peer_owner

log = logging.getLogger(__name__)

# What spends, consumes or shows a login of this user's (a result page, doctor's check).
GUARDED = ("/go/", "/callback/", "/result/", "/self-test/")
ROOT = 0
REFUSAL_LOG_INTERVAL_SECONDS = 1.0

Lookup = Callable[[tuple[str, int], tuple[str, int]], int | None]


class CannotTell:
    """Whether the daemon has said it cannot tell users apart: once in its lifetime."""

    warned = False


def own_user_only(
    *,
    refuse: Callable[[web.Request], web.StreamResponse],
    uid: int | None = None,
    lookup: Lookup = tcp_peer_owner,
) -> Middleware:
    """Build a middleware that answers ``refuse(request)`` to another user's guarded request."""
    # The effective uid: the uid column of /proc/net/tcp is the one a socket was made with.
    allowed = frozenset({effective_uid() if uid is None else uid, ROOT})
    last_logged: float | None = None
    # Connections whose peer was found to be allowed; gone with their transport.
    served: weakref.WeakKeyDictionary[asyncio.BaseTransport, int] = weakref.WeakKeyDictionary()
    unlogged = 0

    @web.middleware
    async def refuse_other_users(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal last_logged, unlogged
        prefix = guarded_prefix(request)
        if prefix is None:
            return await handler(request)
        transport = request.transport
        if transport is not None and transport in served:
            # A socket's owner is fixed when it is made: one look-up a connection, not one
            # a request (a kept-alive browser, or a flood of strays, pays it once).
            return await handler(request)
        owner = await peer_uid(request, lookup)
        if owner is None:
            if not CannotTell.warned:
                CannotTell.warned = True
                log.warning(
                    "cannot tell which local user opened a browser connection (this system "
                    "does not show it, no readable /proc/self/net/tcp, or a peer not on this "
                    "machine's loopback): serving as before, to every local user"
                )
            return await handler(request)
        if owner in allowed:
            if transport is not None:
                served[transport] = owner
            return await handler(request)
        # Another user could fill the log with refusals: one line a second at most. Only
        # the prefix: a /go/ address is a secret.
        now = time.monotonic()
        if last_logged is None or now - last_logged >= REFUSAL_LOG_INTERVAL_SECONDS:
            who = (
                "a connection whose far end has hung up (its user is unknown)"
                if owner == GONE
                else f"uid {owner}, not this daemon's user"
            )
            more = f"; {unlogged} more since the last such line" if unlogged else ""
            log.warning("refused a request for %s... from %s%s", prefix, who, more)
            last_logged, unlogged = now, 0
        else:
            unlogged += 1
        return refuse(request)

    return refuse_other_users


def guarded_prefix(request: web.Request) -> str | None:
    """Return the guarded prefix the request's path starts with, if any."""
    # The decoded path: the router matches one no less decoded (/%63allback/ is routed
    # as /callback/).
    return next((prefix for prefix in GUARDED if request.path.startswith(prefix)), None)


async def peer_uid(request: web.Request, lookup: Lookup) -> int | None:
    """Return the uid that opened the request's connection, ``GONE``, or None if unknown."""
    transport = request.transport
    if transport is None:
        return GONE  # the connection is lost already: nobody is left to serve
    local = transport.get_extra_info("sockname")
    remote = transport.get_extra_info("peername")
    if not (isinstance(local, tuple) and isinstance(remote, tuple)):
        return None  # not TCP (a UNIX socket): there is no table to look in
    # IPv6 names are (host, port, flowinfo, scope_id): the first two are what we match.
    # Inline: sock_diag answers in some 20 µs, less than a hop to a thread. (Where it is
    # missing, the tables are read, which takes milliseconds with thousands of sockets.)
    return lookup((local[0], local[1]), (remote[0], remote[1]))
