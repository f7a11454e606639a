"""Durable writes on macOS: F_FULLFSYNC, and fsync where a file system lacks it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bridge.platform import macos


class FakeFcntl:
    """An fcntl module that records its calls and answers with ``error``, if given."""

    def __init__(self, error: int | None = None, *, named: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []
        self.error = error
        if named:
            self.F_FULLFSYNC = 51

    def fcntl(self, fd: int, cmd: int, arg: int = 0, /) -> int:
        self.calls.append((fd, cmd))
        if self.error is not None:
            raise OSError(self.error, os.strerror(self.error))
        return 0


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    return calls


def test_f_fullfsync_is_darwins_value() -> None:
    assert macos.F_FULLFSYNC == 51


def test_sync_file_flushes_the_drive_with_f_fullfsync(fsyncs: list[int]) -> None:
    fake = FakeFcntl()
    macos.sync_file(7, fcntl_module=fake)
    assert (fake.calls, fsyncs) == ([(7, 51)], [])


def test_sync_file_uses_the_known_value_when_fcntl_lacks_the_name(fsyncs: list[int]) -> None:
    fake = FakeFcntl(named=False)
    macos.sync_file(7, fcntl_module=fake)
    assert fake.calls == [(7, 51)]


@pytest.mark.parametrize("refusal", [errno.ENOTSUP, errno.EINVAL, errno.ENOTTY])
def test_sync_file_falls_back_to_fsync_where_f_fullfsync_is_refused(
    refusal: int, fsyncs: list[int]
) -> None:
    macos.sync_file(7, fcntl_module=FakeFcntl(refusal))
    assert fsyncs == [7]


def test_sync_file_raises_a_failed_flush(fsyncs: list[int]) -> None:
    with pytest.raises(OSError, match="Input/output error"):
        macos.sync_file(7, fcntl_module=FakeFcntl(errno.EIO))
    assert fsyncs == []


def test_sync_file_falls_back_to_fsync_on_linux(tmp_path: Path, fsyncs: list[int]) -> None:
    # Linux's fcntl has no command 51: EINVAL, then fsync.
    with (tmp_path / "store").open("wb") as handle:
        handle.write(b"login")
        handle.flush()
        macos.sync_file(handle.fileno())
        assert [handle.fileno()] == fsyncs
