"""The login store: hashed states, atomic transitions, durability across restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bridge.daemon.model import NewLogin, Outcome, Status
from bridge.daemon.store import DuplicateState, LoginStore, PendingLimitReached, state_hash


def open_store(tmp_path: Path, **kw: float) -> LoginStore:
    return LoginStore(
        tmp_path / "logins.sqlite3",
        retention_seconds=kw.get("retention", 60),
        pending_limit=int(kw.get("limit", 1000)),
    )


def register(store: LoginStore, state: str, *, now: float = 1000.0, ttl: float = 600) -> str:
    new = NewLogin(
        provider_id="github",
        state=state,
        redirect_uri="http://x/callback/github",
        ttl_seconds=ttl,
        secret="secret-canary-" + state,
    )
    return store.register(new, now=now).id


def test_no_state_is_at_rest_in_the_clear(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    register(store, "plain-state-canary")
    store.close()

    for path in tmp_path.iterdir():
        assert b"plain-state-canary" not in path.read_bytes()
    rows = (
        sqlite3.connect(tmp_path / "logins.sqlite3")
        .execute("SELECT state_hash FROM logins")
        .fetchall()
    )
    assert [(state_hash("plain-state-canary"),)] == rows


def test_a_state_is_registered_once(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    register(store, "s")
    with pytest.raises(DuplicateState):
        register(store, "s")


def test_the_pending_limit_counts_pending_logins_only(tmp_path: Path) -> None:
    store = open_store(tmp_path, limit=1)
    first = register(store, "a")
    with pytest.raises(PendingLimitReached):
        register(store, "b")
    store.finish(first, Outcome(Status.CANCELLED), now=1001, current=Status.PENDING)
    register(store, "b")


def test_begin_forward_succeeds_once(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    login_id = register(store, "s")

    assert [
        store.begin_forward(login_id, 1001),
        store.begin_forward(login_id, 1001),
    ] == [True, False]


def test_an_expired_login_cannot_begin_forwarding(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    login_id = register(store, "s", ttl=10)

    assert not store.begin_forward(login_id, 1010)
    assert [login_id] == store.expire_due(1010)
    assert store.get(login_id).status == Status.EXPIRED  # type: ignore[union-attr]


def test_pending_logins_survive_reopening(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    login_id = register(store, "s")
    store.close()

    again = open_store(tmp_path)

    assert again.find_by_state("s").status == Status.PENDING  # type: ignore[union-attr]
    assert again.pending_count == 1
    assert login_id == again.find_by_state("s").id  # type: ignore[union-attr]


def test_a_login_left_forwarding_becomes_interrupted_and_is_never_resent(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    login_id = register(store, "s")
    store.begin_forward(login_id, 1001)
    store.close()

    again = open_store(tmp_path)
    assert again.recover_interrupted(1002) == 1

    login = again.get(login_id)
    assert login is not None
    assert (login.status, (login.result or {})["error"]) == (Status.FAILED, "interrupted")
    assert not again.begin_forward(login_id, 1003)


def test_the_control_plane_body_is_kept_in_memory_only(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    login_id = register(store, "s")
    store.begin_forward(login_id, 1001)
    store.finish(
        login_id,
        Outcome(
            Status.SUCCEEDED,
            stored={"control_plane_status": 200},
            answer={"control_plane_body": {"token": "tok-canary"}},
        ),
        now=1002,
        current=Status.FORWARDING,
    )
    login = store.get(login_id)
    assert login is not None
    assert login.result == {
        "control_plane_status": 200,
        "control_plane_body": {"token": "tok-canary"},
    }
    store.close()

    again = open_store(tmp_path)

    assert (again.get(login_id).result) == {"control_plane_status": 200, "control_plane_body": None}  # type: ignore[union-attr]
    for path in tmp_path.iterdir():
        assert b"tok-canary" not in path.read_bytes()


def test_terminal_logins_are_kept_for_the_retention_time_then_swept(tmp_path: Path) -> None:
    store = open_store(tmp_path, retention=60)
    login_id = register(store, "s")
    store.finish(login_id, Outcome(Status.CANCELLED), now=1000, current=Status.PENDING)

    store.sweep(1059)
    assert store.get(login_id) is not None
    store.sweep(1060)
    assert store.get(login_id) is None


def test_next_deadline_is_the_earliest_expiry_or_discard(tmp_path: Path) -> None:
    store = open_store(tmp_path, retention=5)
    assert store.next_deadline() is None
    a = register(store, "a", ttl=100)
    register(store, "b", ttl=50)
    assert store.next_deadline() == 1050
    store.finish(a, Outcome(Status.CANCELLED), now=1000, current=Status.PENDING)
    assert store.next_deadline() == 1005


def test_the_store_journals_in_wal_mode_with_synchronous_commits(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    register(store, "s")

    db = sqlite3.connect(tmp_path / "logins.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] >= 1  # NORMAL or FULL


def test_a_checkpoint_flushes_as_the_wal_sync_does(tmp_path: Path) -> None:
    # On macOS, F_FULLFSYNC for the frames a checkpoint moves out of the synced WAL.
    store = open_store(tmp_path)

    assert store._db.execute("PRAGMA checkpoint_fullfsync").fetchone()[0] == 1
