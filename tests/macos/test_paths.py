"""The runtime dir on macOS, and the 104-byte limit of its Unix socket paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from platformdirs.macos import MacOS

from bridge.platform import macos


def test_default_runtime_dir_is_platformdirs_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    expected = MacOS("oauth-bridge", appauthor=False, ensure_exists=False).user_runtime_dir
    assert Path(expected) == macos.default_runtime_dir(tmp_path)


def test_default_runtime_dir_leaves_room_for_the_control_socket() -> None:
    home = Path("/Users/" + "a" * 32)  # a long short name
    macos.check_socket_path(macos.default_runtime_dir(home) / "control.sock")


def test_a_socket_path_of_103_bytes_fits() -> None:
    path = Path("/" + "s" * 102)
    assert len(str(path)) == 103
    macos.check_socket_path(path)


def test_a_socket_path_of_104_bytes_is_refused() -> None:
    path = Path("/" + "s" * 103)
    with pytest.raises(macos.SocketPathTooLong) as raised:
        macos.check_socket_path(path)
    assert (path, 104) == (raised.value.path, raised.value.length)


def test_the_refusal_names_the_limit_and_the_way_out() -> None:
    with pytest.raises(macos.SocketPathTooLong, match=r"allows 103 \(104 with") as raised:
        macos.check_socket_path(Path("/" + "s" * 200))
    assert "OAUTH_BRIDGE_RUNTIME_DIR" in str(raised.value)


def test_the_limit_counts_bytes_not_characters() -> None:
    path = Path("/" + "é" * 52)  # 53 characters, 105 bytes in UTF-8
    with pytest.raises(macos.SocketPathTooLong):
        macos.check_socket_path(path)
