"""Logins in motion: the store plus the wake-ups, expiry and in-flight forwards around it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from bridge.daemon.config import Credentials
from bridge.daemon.model import Credentials as Whose
from bridge.daemon.model import Login, NewLogin, Outcome, Status
from bridge.daemon.store import LoginStore

log = logging.getLogger(__name__)


class CredentialsLost(Exception):
    """A login made with its caller's credentials, which a restart of the daemon lost."""


class Logins:
    """Every state change of a login goes through here, so waiters and timers stay true."""

    def __init__(
        self,
        store: LoginStore,
        *,
        clock: Callable[[], float] = time.time,
        daemon_fingerprint: str | None = None,
    ) -> None:
        self.store = store
        # The daemon's own credentials, as a fingerprint: what its logins were made with.
        self.daemon_fingerprint = daemon_fingerprint
        self.clock = clock
        self._changed: dict[str, asyncio.Event] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._forwards: set[asyncio.Task[Any]] = set()
        self._sync: asyncio.Future[None] | None = None  # the next group commit's
        self.last_outcome: Status | None = None
        # Set at shutdown: no forward starts, no wait blocks.
        self.stopping = False
        # Called after any transition; the daemon hangs its systemd STATUS and idle
        # tracking here instead of polling.
        self.listeners: list[Callable[[], None]] = []
        # The caller's own LangSmith credentials, by login: in memory only, and only
        # until the login ends (the forward and the wait are all that need them).
        self._credentials: dict[str, Credentials] = {}

    # -- reading ------------------------------------------------------------------

    def get(self, login_id: str) -> Login | None:
        return self._current(self.store.get(login_id))

    def find_by_state(self, state: str) -> Login | None:
        return self._current(self.store.find_by_state(state))

    def _current(self, login: Login | None) -> Login | None:
        """Expire a login whose time is up even if the timer has not run yet."""
        if login is None or login.status is not Status.PENDING or login.expires_at > self.clock():
            return login
        self.expire_due()
        return self.store.get(login.id)

    @property
    def busy(self) -> bool:
        """True while any login is pending or being forwarded."""
        return self.store.pending_count > 0 or bool(self._forwards)

    # -- changing -----------------------------------------------------------------

    def register(self, new: NewLogin, *, credentials: Credentials | None = None) -> Login:
        """Register a login; ``credentials`` are the caller's, for a login made as its user."""
        if self._timer_at is not None and self._timer_at <= self.clock():
            self.expire_due()  # the timer is due but has not run yet: free expired places
        if new.credentials is Whose.DAEMON:
            new = replace(new, daemon_fingerprint=self.daemon_fingerprint)
        login = self.store.register(new, now=self.clock())
        if credentials is not None and new.credentials is Whose.CALLER:
            self._credentials[login.id] = credentials
        log.info(
            "login %s registered for %s%s, pending for %.0fs",
            login.id,
            login.provider_id,
            " (Agent Auth)" if new.auth_id is not None else "",
            login.expires_at - login.created_at,
        )
        self._schedule(login.expires_at)
        self._changed_now(login.id)
        return login

    def credentials_of(self, login: Login) -> Credentials | None:
        """Return the credentials to call the control plane with for ``login``.

        None means the daemon's own; a login made as its caller's user whose
        credentials a restart lost raises CredentialsLost: it must never go out as the
        daemon's user instead.
        """
        if login.credentials is Whose.DAEMON:
            if login.daemon_fingerprint not in (None, self.daemon_fingerprint):
                # Made as the daemon's user of then, which a restart with other
                # credentials no longer is: never sent as the new one's.
                raise CredentialsLost(login.id)
            return None
        credentials = self._credentials.get(login.id)
        if credentials is None:
            raise CredentialsLost(login.id)
        return credentials

    def browser_seen(self, login_id: str) -> None:
        """Record that the user's browser reached this daemon for the login, and say it."""
        login = self.store.get(login_id)
        if login is not None and not login.browser_seen:
            self.store.mark_browser_seen(login_id)
            self._changed_now(login_id)

    async def begin_forward(self, login_id: str) -> bool:
        """Move a pending login to ``forwarding`` and put that on disk; False if it moved on."""
        if not self.store.begin_forward(login_id, self.clock()):
            return False
        try:
            await self._on_disk()
        except OSError as exc:
            # Without the mark on disk the forward must not go: fail it, nothing sent.
            log.error("login %s: the store could not be synced (%s)", login_id, exc.strerror)
            unsynced = Outcome(
                Status.FAILED,
                stored={
                    "error": "interrupted",
                    "message": f"oauth-bridge could not write to its store ({exc.strerror}); "
                    "nothing was sent. Start the login again.",
                },
            )
            self.finish(login_id, unsynced, current=Status.FORWARDING)
            return False
        return True

    async def _on_disk(self) -> None:
        """Return once every commit made so far is synced: one sync serves a whole batch.

        A group commit: the sync runs once the callbacks ready now have all committed,
        on the loop itself (a thread hop costs more under load than the sync, the GIL's
        switch interval being 5 ms), and every forward committed before it shares it.
        """
        if self._sync is None:
            loop = asyncio.get_running_loop()
            self._sync = loop.create_future()
            loop.call_soon(self._sync_now)
        await asyncio.shield(self._sync)

    def _sync_now(self) -> None:
        done, self._sync = self._sync, None
        assert done is not None
        try:
            self.store.sync()
        except OSError as exc:
            done.set_exception(exc)
        else:
            done.set_result(None)

    def finish(self, login_id: str, outcome: Outcome, *, current: Status) -> bool:
        now = self.clock()
        done = self.store.finish(login_id, outcome, now=now, current=current)
        if done:
            self._credentials.pop(login_id, None)
            self.last_outcome = outcome.status
            log.info("login %s %s %s", login_id, outcome.status.value, _why(outcome))
            self._schedule(now + self.store.retention_seconds)
            self._changed_now(login_id)
        return done

    def expire_due(self) -> None:
        for login_id in self.store.expire_due(self.clock()):
            self._credentials.pop(login_id, None)
            self.last_outcome = Status.EXPIRED
            log.info("login %s expired", login_id)
            self._changed_now(login_id)

    def track_forward(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a forward as its own task, so a closed browser tab cannot cancel it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._forwards.add(task)
        task.add_done_callback(self._forward_done)
        return task

    async def drain(self, seconds: float) -> int:
        """Wait up to ``seconds`` for forwards in flight; return how many did not finish."""
        if not self._forwards:
            return 0
        _, pending = await asyncio.wait(set(self._forwards), timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return len(pending)

    # -- waiting ------------------------------------------------------------------

    async def wait_terminal(self, login_id: str, seconds: float) -> Login | None:
        """Return the login once terminal, or as it is when ``seconds`` run out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            login = self.get(login_id)
            if login is None or login.status.terminal or self.stopping:
                return login
            remaining = deadline - loop.time()
            if remaining <= 0:
                return login
            event = self._changed.setdefault(login_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return self.get(login_id)

    def begin_shutdown(self) -> None:
        """Start no more forwards, and answer every wait at once from now on."""
        self.stopping = True
        for login_id in list(self._changed):
            self._changed.pop(login_id).set()

    # -- internals ----------------------------------------------------------------

    def _changed_now(self, login_id: str) -> None:
        event = self._changed.pop(login_id, None)
        if event is not None:
            event.set()
        for listener in self.listeners:
            listener()

    def _forward_done(self, task: asyncio.Task[Any]) -> None:
        self._forwards.discard(task)
        for listener in self.listeners:
            listener()

    def _schedule(self, when: float) -> None:
        """Arm one timer for the earliest deadline: no timer ticks while nothing is due."""
        if self._timer_at is not None and self._timer_at <= when:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_later(max(0.0, when - self.clock()) + 0.001, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.expire_due()
        self.store.sweep(self.clock())
        upcoming = self.store.next_deadline()
        if upcoming is not None:
            self._schedule(upcoming)

    def start(self) -> None:
        """Arm the deadline timer for what the store already holds (after a restart)."""
        self.expire_due()
        self.store.sweep(self.clock())
        upcoming = self.store.next_deadline()
        if upcoming is not None:
            self._schedule(upcoming)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        self.begin_shutdown()


def _why(outcome: Outcome) -> str:
    error = outcome.stored.get("error")
    status = outcome.stored.get("control_plane_status")
    parts = [f"error={error}" if error else "", f"control_plane_status={status}" if status else ""]
    return " ".join(p for p in parts if p)
