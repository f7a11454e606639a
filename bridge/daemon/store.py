"""The login store: SQLite in the state dir, keyed by a hash of each state."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
from pathlib import Path

from bridge.daemon.model import (
    JSON,
    Callback,
    Credentials,
    Login,
    NewLogin,
    Outcome,
    Status,
    interrupted,
)
from bridge.platform import open_for_sync, sync_file

SCHEMA = """
CREATE TABLE IF NOT EXISTS logins (
    id TEXT PRIMARY KEY,
    state_hash BLOB NOT NULL UNIQUE,
    provider_id TEXT NOT NULL,
    status TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    expected_issuer TEXT,
    require_issuer INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    discard_at REAL,
    auth_id TEXT,
    client_name TEXT,
    secret_hash BLOB,
    callback TEXT NOT NULL DEFAULT 'loopback',
    browser_seen INTEGER NOT NULL DEFAULT 0,
    credentials TEXT NOT NULL DEFAULT 'daemon',
    daemon_fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS logins_pending_expiry ON logins (expires_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS logins_discard ON logins (discard_at) WHERE discard_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS logins_in_flight ON logins (status) WHERE status = 'forwarding';
"""

COLUMNS = (
    "id, provider_id, status, redirect_uri, created_at, expires_at, expected_issuer,"
    " require_issuer, result, auth_id, client_name, secret_hash, callback, browser_seen,"
    " credentials, daemon_fingerprint"
)
# Columns added since the first version, with their definitions: a store from an earlier
# version gains them when it is opened.
ADDED_COLUMNS = {
    "auth_id": "TEXT",
    "client_name": "TEXT",
    "secret_hash": "BLOB",
    "callback": "TEXT NOT NULL DEFAULT 'loopback'",
    "browser_seen": "INTEGER NOT NULL DEFAULT 0",
    "credentials": "TEXT NOT NULL DEFAULT 'daemon'",
    "daemon_fingerprint": "TEXT",
}


class DuplicateState(Exception):
    """That state is already registered."""


class PendingLimitReached(Exception):
    """As many logins are pending as the daemon accepts."""


def new_login_id() -> str:
    """Return a fresh login id that never starts with '-': it is a CLI argument too."""
    while True:
        login_id = secrets.token_urlsafe(12)
        if not login_id.startswith("-"):
            return login_id


def state_hash(state: str) -> bytes:
    """Hash a state so that no state is ever at rest in the clear."""
    return hashlib.sha256(state.encode("utf-8", "surrogatepass")).digest()


def new_secret() -> str:
    """Return a fresh login secret: what the creator shows to read the token."""
    return secrets.token_urlsafe(32)


def secret_matches(login: Login, secret: str) -> bool:
    """Compare a shown secret with the login's, in constant time."""
    shown = hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
    return bool(login.secret_hash) and hmac.compare_digest(shown, login.secret_hash)


class LoginStore:
    """Logins on disk, plus the control plane's answers, which stay in memory only."""

    def __init__(self, path: Path, *, retention_seconds: float, pending_limit: int) -> None:
        self.retention_seconds = retention_seconds
        self.pending_limit = pending_limit
        # One connection, used only from the event loop's thread; every statement is
        # short and local, so running them inline beats a thread hop per call.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # WAL with synchronous=NORMAL: a commit is durable against a crash of the
        # process (SIGKILL included) without an fsync per registration; the one commit
        # that must survive a crash of the machine is synced (sync, before a forward).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        # A checkpoint copies synced WAL frames into the database and then reuses the
        # WAL: on macOS a plain fsync of the database leaves them in the drive's cache,
        # so the checkpoint flushes with F_FULLFSYNC as sync_file does (elsewhere
        # SQLite ignores the flag).
        self._db.execute("PRAGMA checkpoint_fullfsync=ON")
        self._db.executescript(SCHEMA)
        # The WAL file exists from the first write on and lives as long as the
        # connection: syncing it makes every commit so far durable.
        self._wal = open_for_sync(f"{path}-wal")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(logins)")}
        for column, definition in ADDED_COLUMNS.items():  # a store from an earlier version
            if column not in columns:
                self._db.execute(f"ALTER TABLE logins ADD COLUMN {column} {definition}")
        self._db.row_factory = sqlite3.Row
        self._answers: dict[str, dict[str, JSON]] = {}
        # Every state hash in the table: a stray or forged callback is refused without
        # a query, which is most of the cost of a flood of them.
        self._hashes: set[bytes] = {
            row[0] for row in self._db.execute("SELECT state_hash FROM logins")
        }
        self._pending: int = self._db.execute(
            "SELECT count(*) FROM logins WHERE status = 'pending'"
        ).fetchone()[0]

    def sync(self) -> None:
        """Put every commit so far on disk.

        After a power cut a login must still read ``forwarding``, or a reload of the
        callback would send a used code again, which some providers answer by revoking
        the tokens already issued (RFC 6749 10.5). Commits live in the WAL: an fdatasync
        of it, through a descriptor of our own (a sync is per file, not per descriptor).
        """
        sync_file(self._wal)  # fdatasync on Linux (F_FULLFSYNC, fsync elsewhere)

    def close(self) -> None:
        self._db.close()
        os.close(self._wal)

    def recover_interrupted(self, now: float) -> int:
        """Fail every login left ``forwarding`` by a previous run: it is never resent.

        An Agent Auth login made with the daemon's credentials stays ``forwarding``: the
        control plane's wait endpoint may say it completed (``AgentAuth.resume`` asks).
        """
        outcome = interrupted()
        cursor = self._db.execute(
            "UPDATE logins SET status = ?, result = ?, discard_at = ? WHERE status = 'forwarding'"
            " AND (auth_id IS NULL OR auth_id = '' OR credentials != 'daemon')",
            (outcome.status.value, json.dumps(outcome.stored), now + self.retention_seconds),
        )
        return int(cursor.rowcount)

    def interrupted_on_agent_auth(self) -> list[Login]:
        """Return the logins a previous run left forwarding whose outcome the wait may tell."""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM logins WHERE status = 'forwarding' AND auth_id IS NOT NULL"
        ).fetchall()
        return [self._login(row) for row in rows]

    def mark_browser_seen(self, login_id: str) -> None:
        """Record that the user's browser reached this daemon for the login."""
        self._db.execute("UPDATE logins SET browser_seen = 1 WHERE id = ?", (login_id,))

    @property
    def pending_count(self) -> int:
        return self._pending

    def register(self, new: NewLogin, *, now: float) -> Login:
        if self._pending >= self.pending_limit:
            raise PendingLimitReached
        digest = state_hash(new.state)
        login = Login(
            id=new_login_id(),
            provider_id=new.provider_id,
            status=Status.PENDING,
            redirect_uri=new.redirect_uri,
            created_at=now,
            expires_at=now + new.ttl_seconds,
            expected_issuer=new.expected_issuer,
            require_issuer=new.require_issuer,
            auth_id=new.auth_id,
            client_name=new.client_name,
            callback=new.callback,
            credentials=new.credentials,
            secret_hash=hashlib.sha256(new.secret.encode()).digest(),
            daemon_fingerprint=new.daemon_fingerprint,
        )
        try:
            self._db.execute(
                "INSERT INTO logins (id, state_hash, provider_id, status, redirect_uri,"
                " created_at, expires_at, expected_issuer, require_issuer, auth_id,"
                " client_name, secret_hash, callback, credentials, daemon_fingerprint)"
                " VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    login.id,
                    digest,
                    login.provider_id,
                    login.redirect_uri,
                    login.created_at,
                    login.expires_at,
                    login.expected_issuer,
                    login.require_issuer,
                    login.auth_id,
                    login.client_name,
                    login.secret_hash,
                    login.callback.value,
                    login.credentials.value,
                    login.daemon_fingerprint,
                ),
            )
        except sqlite3.IntegrityError:
            raise DuplicateState from None
        self._hashes.add(digest)
        self._pending += 1
        return login

    def get(self, login_id: str) -> Login | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM logins WHERE id = ?", (login_id,)).fetchone()
        return None if row is None else self._login(row)

    def find_by_state(self, state: str) -> Login | None:
        digest = state_hash(state)
        if digest not in self._hashes:
            return None
        row = self._db.execute(
            f"SELECT {COLUMNS} FROM logins WHERE state_hash = ?", (digest,)
        ).fetchone()
        return None if row is None else self._login(row)

    def waiting_on_agent_auth(self) -> list[Login]:
        """Return the pending logins whose outcome the control plane's wait endpoint tells."""
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM logins WHERE status = 'pending' AND auth_id IS NOT NULL"
        ).fetchall()
        return [self._login(row) for row in rows]

    def all(self) -> list[Login]:
        rows = self._db.execute(f"SELECT {COLUMNS} FROM logins ORDER BY created_at").fetchall()
        return [self._login(row) for row in rows]

    def recent(self, limit: int) -> list[Login]:
        rows = self._db.execute(
            f"SELECT {COLUMNS} FROM logins ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self._login(row) for row in rows]

    def begin_forward(self, login_id: str, now: float) -> bool:
        """Move a live pending login to ``forwarding``; False if anything got there first.

        The commit is not on disk yet: ``sync`` must run before the forward's first byte.
        """
        cursor = self._db.execute(
            "UPDATE logins SET status = 'forwarding'"
            " WHERE id = ? AND status = 'pending' AND expires_at > ?",
            (login_id, now),
        )
        if cursor.rowcount:
            self._pending -= 1
        return cursor.rowcount == 1

    def finish(self, login_id: str, outcome: Outcome, *, now: float, current: Status) -> bool:
        """Record an outcome if the login is still in ``current``; False if it moved on."""
        assert outcome.status.terminal
        cursor = self._db.execute(
            "UPDATE logins SET status = ?, result = ?, discard_at = ? WHERE id = ? AND status = ?",
            (
                outcome.status.value,
                json.dumps(outcome.stored),
                now + self.retention_seconds,
                login_id,
                current.value,
            ),
        )
        if cursor.rowcount != 1:
            return False
        if current is Status.PENDING:
            self._pending -= 1
        if outcome.answer:
            self._answers[login_id] = outcome.answer
        return True

    def expire_due(self, now: float) -> list[str]:
        """Expire every pending login whose time is up, and return their ids."""
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM logins WHERE status = 'pending' AND expires_at <= ?", (now,)
            )
        ]
        expired = Outcome(
            Status.EXPIRED,
            stored={"message": "The login expired before the browser came back to oauth-bridge."},
        )
        for login_id in ids:
            self.finish(login_id, expired, now=now, current=Status.PENDING)
        return ids

    def sweep(self, now: float) -> int:
        """Forget terminal logins whose retention time has passed."""
        swept = self._db.execute(
            "DELETE FROM logins WHERE discard_at IS NOT NULL AND discard_at <= ?"
            " RETURNING id, state_hash",
            (now,),
        ).fetchall()
        for login_id, digest in swept:
            self._answers.pop(login_id, None)
            self._hashes.discard(digest)
        return len(swept)

    def next_deadline(self) -> float | None:
        """Return when the next pending login expires or terminal login is forgotten."""
        row = self._db.execute(
            "SELECT min(t) FROM ("
            " SELECT min(expires_at) AS t FROM logins WHERE status = 'pending'"
            " UNION ALL SELECT min(discard_at) FROM logins WHERE discard_at IS NOT NULL)"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def _login(self, row: sqlite3.Row) -> Login:
        login_id = str(row["id"])
        status = Status(str(row["status"]))
        auth_id = row["auth_id"]
        stored = json.loads(row["result"]) if isinstance(row["result"], str) else None
        if stored is not None:
            stored.update(self._answers.get(login_id, {}))
            if status is Status.SUCCEEDED:
                # The body and the token are held in memory only: after a restart, null.
                stored.setdefault("control_plane_body", None)
                if auth_id is not None:
                    stored.setdefault("token", None)
        return Login(
            id=login_id,
            provider_id=str(row["provider_id"]),
            status=status,
            redirect_uri=str(row["redirect_uri"]),
            created_at=float(row["created_at"]),
            expires_at=float(row["expires_at"]),
            expected_issuer=row["expected_issuer"],
            require_issuer=bool(row["require_issuer"]),
            result=stored,
            auth_id=None if auth_id is None else str(auth_id),
            client_name=row["client_name"],
            callback=Callback(row["callback"]),
            browser_seen=bool(row["browser_seen"]),
            credentials=Credentials(row["credentials"]),
            secret_hash=bytes(row["secret_hash"] or b""),
            daemon_fingerprint=row["daemon_fingerprint"],
        )
