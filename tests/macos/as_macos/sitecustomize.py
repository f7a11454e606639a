"""Make this interpreter run oauth-bridge as it runs on macOS, on Linux (tests/macos only).

On PYTHONPATH, with OAUTH_BRIDGE_TEST_AS_MACOS naming the built launch stub
(``tests/macos/stub/launch_stub.c``), every interpreter of a test (the tool, the daemon
it starts, install-service) has ``sys.platform == "darwin"``: the platform package picks
``bridge.platform.macos``, platformdirs its macOS dirs, install-service the LaunchAgent.
Only what a Mac's kernel and libSystem answer is stood in for:

- ``launch_activate_socket``: the stub (launchd's sockets, or ESRCH: not launchd's);
- ``LOCAL_PEERCRED``: Linux's SO_PEERCRED, written as the struct xucred macOS fills in
  and read by the code macOS runs (``parse_xucred``).
"""

from __future__ import annotations

import os
import sys

_STUB = os.environ.get("OAUTH_BRIDGE_TEST_AS_MACOS")

if _STUB:
    # Before the switch: on darwin, urllib.request imports _scproxy (only macOS builds of
    # CPython have it), sysconfig reads _sysconfigdata__darwin_* (zoneinfo asks it, for
    # pydantic), and ctypes loads libraries RTLD_GLOBAL for a "kernel" < 8.
    import ctypes  # noqa: F401
    import socket
    import struct
    import sysconfig
    import urllib.request  # noqa: F401

    sysconfig.get_config_vars()

    sys.platform = "darwin"

    from bridge.platform import macos

    macos._LIBSYSTEM = _STUB  # the test's libSystem

    def _peer_uid(sock: socket.socket) -> int:
        _pid, uid, gid = struct.unpack(
            "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        )
        groups = [gid] + [0] * 15
        xucred = struct.pack("=IIh2x16I", macos.XUCRED_VERSION, uid, 1, *groups)
        return macos.parse_xucred(xucred)

    macos.peer_uid = _peer_uid
