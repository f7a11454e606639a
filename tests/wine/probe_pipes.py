"""Probe, under the Windows Python (Wine or Windows), what a named-pipe control channel needs.

Run: `wine64 python.exe probe_pipes.py` (tests/wine/run-probes.sh does). Prints one JSON
line per check, {"check": ..., "ok": true|false, "detail": ...}, and exits 1 if any failed.

Checks:
- asyncio: `ProactorEventLoop.start_serving_pipe` serves; clients via `open()` (a thread),
  `_winapi.CreateFile` (a child process) and `loop.create_pipe_connection` exchange bytes;
- the peer: `GetNamedPipeClientProcessId` names the client's pid, and that pid's token
  (`OpenProcess` + `OpenProcessToken` + `GetTokenInformation(TokenUser)`) has our SID;
- `ConvertSidToStringSidW` gives "S-1-5-...";
- `CreateNamedPipeW` with `PIPE_REJECT_REMOTE_CLIENTS` and a security descriptor from
  `ConvertStringSecurityDescriptorToSecurityDescriptorW("D:P(A;;GA;;;<our SID>)")`: the
  client gets in; with a DACL that grants only SYSTEM, whether it is kept out (Windows does);
- `FILE_FLAG_FIRST_PIPE_INSTANCE`: a second server on a taken name is refused;
- the same secure handle served by asyncio (a PipeServer whose `_server_pipe_handle` passes
  the security attributes), which is how a daemon would listen.
"""

from __future__ import annotations

import _winapi
import asyncio
import asyncio.windows_events as windows_events
import asyncio.windows_utils as windows_utils
import ctypes
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from ctypes import wintypes
from typing import Any

assert sys.platform == "win32"  # mypy checks none of what follows on Linux; ruff does

kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)

TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
PIPE_TYPE_BYTE = 0x00000000  # _winapi has only the MESSAGE flavours
PIPE_READMODE_BYTE = 0x00000000
PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
SDDL_REVISION_1 = 1
ERROR_ACCESS_DENIED = 5
ERROR_PIPE_CONNECTED = 535
INVALID_HANDLE_VALUE = wintypes.HANDLE(-1).value


class SECURITY_ATTRIBUTES(ctypes.Structure):
    _fields_ = (
        ("nLength", wintypes.DWORD),
        ("lpSecurityDescriptor", wintypes.LPVOID),
        ("bInheritHandle", wintypes.BOOL),
    )


class SID_AND_ATTRIBUTES(ctypes.Structure):
    _fields_ = (("Sid", wintypes.LPVOID), ("Attributes", wintypes.DWORD))


# Every HANDLE and pointer declared: ctypes' default int return would cut them to 32 bits.
kernel32.GetCurrentProcess.restype = wintypes.HANDLE
kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
kernel32.OpenProcess.restype = wintypes.HANDLE
kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
kernel32.LocalFree.argtypes = (wintypes.LPVOID,)
kernel32.LocalFree.restype = wintypes.LPVOID
kernel32.GetNamedPipeClientProcessId.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG))
kernel32.GetNamedPipeClientProcessId.restype = wintypes.BOOL
kernel32.CreateNamedPipeW.argtypes = (
    wintypes.LPCWSTR,
    wintypes.DWORD,
    wintypes.DWORD,
    wintypes.DWORD,
    wintypes.DWORD,
    wintypes.DWORD,
    wintypes.DWORD,
    ctypes.POINTER(SECURITY_ATTRIBUTES),
)
kernel32.CreateNamedPipeW.restype = wintypes.HANDLE
kernel32.ConnectNamedPipe.argtypes = (wintypes.HANDLE, wintypes.LPVOID)
kernel32.ConnectNamedPipe.restype = wintypes.BOOL
kernel32.FlushFileBuffers.argtypes = (wintypes.HANDLE,)
kernel32.FlushFileBuffers.restype = wintypes.BOOL
advapi32.OpenProcessToken.argtypes = (
    wintypes.HANDLE,
    wintypes.DWORD,
    ctypes.POINTER(wintypes.HANDLE),
)
advapi32.OpenProcessToken.restype = wintypes.BOOL
advapi32.GetTokenInformation.argtypes = (
    wintypes.HANDLE,
    ctypes.c_int,
    wintypes.LPVOID,
    wintypes.DWORD,
    ctypes.POINTER(wintypes.DWORD),
)
advapi32.GetTokenInformation.restype = wintypes.BOOL
advapi32.ConvertSidToStringSidW.argtypes = (wintypes.LPVOID, ctypes.POINTER(wintypes.LPWSTR))
advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL
advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = (
    wintypes.LPCWSTR,
    wintypes.DWORD,
    ctypes.POINTER(wintypes.LPVOID),
    ctypes.POINTER(wintypes.ULONG),
)
advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.restype = wintypes.BOOL
advapi32.GetSecurityInfo.argtypes = (
    wintypes.HANDLE,
    ctypes.c_int,
    wintypes.DWORD,
    wintypes.LPVOID,
    wintypes.LPVOID,
    wintypes.LPVOID,
    wintypes.LPVOID,
    ctypes.POINTER(wintypes.LPVOID),
)
advapi32.GetSecurityInfo.restype = wintypes.DWORD
advapi32.ConvertSecurityDescriptorToStringSecurityDescriptorW.argtypes = (
    wintypes.LPVOID,
    wintypes.DWORD,
    wintypes.DWORD,
    ctypes.POINTER(wintypes.LPWSTR),
    ctypes.POINTER(wintypes.ULONG),
)
advapi32.ConvertSecurityDescriptorToStringSecurityDescriptorW.restype = wintypes.BOOL
SE_KERNEL_OBJECT = 6
DACL_SECURITY_INFORMATION = 0x00000004

failures: list[str] = []


def report(check: str, ok: bool, detail: object = None, *, required: bool = True) -> None:
    """One JSON line. A check that is not required (what Windows does and Wine may not)
    is reported but does not fail the probe."""
    if not ok and required:
        failures.append(check)
    line = {"check": check, "ok": ok, "detail": detail}
    if not required:
        line["required"] = False
    print(json.dumps(line), flush=True)


def attempt(check: str, action: Callable[[], object], *, required: bool = True) -> object:
    """Run one check; an exception is that check's failure, with its text as the detail."""
    try:
        detail = action()
    except Exception as exc:
        report(check, False, f"{type(exc).__name__}: {exc}", required=required)
        return None
    report(check, True, detail, required=required)
    return detail


def winerror(what: str) -> OSError:
    code = ctypes.get_last_error()
    return OSError(None, f"{what}: {ctypes.FormatError(code)}", None, code)


def token_sid(process: int) -> str:
    """The string SID of the user that owns ``process`` (a process handle)."""
    token = wintypes.HANDLE()
    if not advapi32.OpenProcessToken(process, TOKEN_QUERY, ctypes.byref(token)):
        raise winerror("OpenProcessToken")
    try:
        size = wintypes.DWORD()
        advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        if not advapi32.GetTokenInformation(
            token, TOKEN_USER_CLASS, buffer, size, ctypes.byref(size)
        ):
            raise winerror("GetTokenInformation(TokenUser)")
        user = SID_AND_ATTRIBUTES.from_buffer(buffer)
        text = wintypes.LPWSTR()
        if not advapi32.ConvertSidToStringSidW(user.Sid, ctypes.byref(text)):
            raise winerror("ConvertSidToStringSidW")
        try:
            return str(text.value)
        finally:
            kernel32.LocalFree(text)
    finally:
        kernel32.CloseHandle(token)


def pid_sid(pid: int) -> str:
    process = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not process:
        raise winerror(f"OpenProcess({pid})")
    try:
        return token_sid(process)
    finally:
        kernel32.CloseHandle(process)


def dacl_of(handle: int) -> str:
    """The DACL of a kernel object, as SDDL (GetSecurityInfo), to see what the pipe kept."""
    descriptor = wintypes.LPVOID()
    code = advapi32.GetSecurityInfo(
        handle,
        SE_KERNEL_OBJECT,
        DACL_SECURITY_INFORMATION,
        None,
        None,
        None,
        None,
        ctypes.byref(descriptor),
    )
    if code:
        raise OSError(None, f"GetSecurityInfo: {ctypes.FormatError(code)}", None, code)
    try:
        text = wintypes.LPWSTR()
        if not advapi32.ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, ctypes.byref(text), None
        ):
            raise winerror("ConvertSecurityDescriptorToStringSecurityDescriptorW")
        try:
            return str(text.value)
        finally:
            kernel32.LocalFree(text)
    finally:
        kernel32.LocalFree(descriptor)


def client_pid(handle: int) -> int:
    pid = wintypes.ULONG()
    if not kernel32.GetNamedPipeClientProcessId(handle, ctypes.byref(pid)):
        raise winerror("GetNamedPipeClientProcessId")
    return int(pid.value)


class SecurityAttributes:
    """SECURITY_ATTRIBUTES around a self-relative SD parsed from SDDL (LocalFree'd on close)."""

    def __init__(self, sddl: str) -> None:
        self.descriptor = wintypes.LPVOID()
        if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl, SDDL_REVISION_1, ctypes.byref(self.descriptor), None
        ):
            raise winerror(f"ConvertStringSecurityDescriptorToSecurityDescriptorW({sddl!r})")
        self.struct = SECURITY_ATTRIBUTES(
            ctypes.sizeof(SECURITY_ATTRIBUTES), self.descriptor, False
        )

    @property
    def address(self) -> int:
        """As an int, for `_winapi.CreateNamedPipe`'s security_attributes argument."""
        return ctypes.addressof(self.struct)

    def close(self) -> None:
        kernel32.LocalFree(self.descriptor)


def secure_pipe(name: str, sa: SecurityAttributes, *, overlapped: bool, first: bool) -> int:
    open_mode = _winapi.PIPE_ACCESS_DUPLEX
    if overlapped:
        open_mode |= _winapi.FILE_FLAG_OVERLAPPED
    if first:
        open_mode |= _winapi.FILE_FLAG_FIRST_PIPE_INSTANCE
    handle = kernel32.CreateNamedPipeW(
        name,
        open_mode,
        PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | _winapi.PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
        _winapi.PIPE_UNLIMITED_INSTANCES,
        4096,
        4096,
        0,
        ctypes.byref(sa.struct),
    )
    if handle in (None, INVALID_HANDLE_VALUE):
        raise winerror(f"CreateNamedPipeW({name})")
    return int(handle)


def serve_one_blocking(handle: int) -> threading.Thread:
    """Accept one client on a blocking pipe handle, echo one message back upper-cased."""
    seen: dict[str, object] = {}

    def run() -> None:
        try:
            if not kernel32.ConnectNamedPipe(handle, None):
                code = ctypes.get_last_error()
                if code != ERROR_PIPE_CONNECTED:
                    raise OSError(None, ctypes.FormatError(code), None, code)
            seen["pid"] = client_pid(handle)
            data, _ = _winapi.ReadFile(handle, 4096)
            _winapi.WriteFile(handle, bytes(data).upper())
            kernel32.FlushFileBuffers(handle)
        except Exception as exc:
            seen["error"] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run, daemon=True)
    thread.seen = seen  # type: ignore[attr-defined]
    thread.start()
    return thread


def open_client(name: str) -> int:
    return int(
        _winapi.CreateFile(
            name,
            _winapi.GENERIC_READ | _winapi.GENERIC_WRITE,
            0,
            _winapi.NULL,
            _winapi.OPEN_EXISTING,
            0,
            _winapi.NULL,
        )
    )


def exchange(name: str, message: bytes) -> bytes:
    client = open_client(name)
    try:
        _winapi.WriteFile(client, message)
        data, _ = _winapi.ReadFile(client, 4096)
        return bytes(data)
    finally:
        _winapi.CloseHandle(client)


# --- asyncio --------------------------------------------------------------------------


class Echo(asyncio.Protocol):
    """Server side: upper-cases what it gets; records the peer's pid and SID."""

    peers: list[dict[str, object]]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        pipe = transport.get_extra_info("pipe")  # windows_utils.PipeHandle
        pid = client_pid(pipe.handle)
        Echo.peers.append({"pid": pid, "sid": pid_sid(pid)})

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[attr-defined]


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.got = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        if not self.got.done():
            self.got.set_result(data)


def thread_client(name: str) -> bytes:
    with open(name, "r+b", buffering=0) as pipe:
        pipe.write(b"from open()")
        return pipe.read(4096) or b""


def child_client(name: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--client", name],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"child exited {done.returncode}: {done.stderr.decode(errors='replace')}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def asyncio_checks(my_sid: str) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, windows_events.ProactorEventLoop)
    name = rf"\\.\pipe\oauth-bridge-probe-{os.getpid()}"
    Echo.peers = []
    servers = await loop.start_serving_pipe(Echo, name)
    report("asyncio.start_serving_pipe", True, name)
    try:
        got = await asyncio.wait_for(loop.run_in_executor(None, thread_client, name), 20)
        report(
            "client open(r'\\\\.\\pipe\\...', 'r+b') in a thread",
            got == b"FROM OPEN()",
            got.decode(),
        )

        child = await asyncio.wait_for(loop.run_in_executor(None, child_client, name), 60)
        report(
            "client _winapi.CreateFile in a child process",
            child.get("reply") == "FROM CHILD",
            child,
        )

        transport, protocol = await loop.create_pipe_connection(Collect, name)
        transport.write(b"from create_pipe_connection")
        reply = await asyncio.wait_for(protocol.got, 20)
        transport.close()
        report(
            "client loop.create_pipe_connection",
            reply == b"FROM CREATE_PIPE_CONNECTION",
            reply.decode(),
        )

        await asyncio.sleep(0.2)
        pids = [peer["pid"] for peer in Echo.peers]
        report(
            "GetNamedPipeClientProcessId (thread, child, asyncio client)",
            len(pids) == 3
            and pids[0] == os.getpid()
            and pids[1] == child.get("pid")
            and pids[2] == os.getpid(),
            {"peers": Echo.peers, "me": os.getpid(), "child": child.get("pid")},
        )
        report(
            "peer's token SID == ours",
            bool(Echo.peers) and all(peer["sid"] == my_sid for peer in Echo.peers),
            {"peers": [peer["sid"] for peer in Echo.peers], "me": my_sid},
        )
    finally:
        for server in servers:
            server.close()


async def asyncio_secure_server(my_sid: str) -> None:
    """asyncio serving a pipe made with our SD + PIPE_REJECT_REMOTE_CLIENTS."""
    sa = SecurityAttributes(f"D:P(A;;GA;;;{my_sid})")

    class SecurePipeServer(windows_events.PipeServer):
        def _server_pipe_handle(self, first: bool) -> windows_utils.PipeHandle | None:
            if self.closed():
                return None
            handle = secure_pipe(self._address, sa, overlapped=True, first=first)
            pipe = windows_utils.PipeHandle(handle)
            self._free_instances.add(pipe)
            return pipe

    loop = asyncio.get_running_loop()
    name = rf"\\.\pipe\oauth-bridge-probe-secure-{os.getpid()}"
    # start_serving_pipe looks PipeServer up in its module when it runs.
    original = windows_events.PipeServer
    windows_events.PipeServer = SecurePipeServer  # type: ignore[misc]
    try:
        servers = await loop.start_serving_pipe(Echo, name)
    finally:
        windows_events.PipeServer = original  # type: ignore[misc]
    try:
        Echo.peers = []
        got = await asyncio.wait_for(loop.run_in_executor(None, exchange, name, b"secure"), 20)
        report(
            "asyncio serving a CreateNamedPipeW(SD, PIPE_REJECT_REMOTE_CLIENTS) handle",
            got == b"SECURE",
            got.decode(),
        )
        got = await asyncio.wait_for(loop.run_in_executor(None, exchange, name, b"again"), 20)
        report(
            "... and its next instance (FIRST_PIPE_INSTANCE only on the first)",
            got == b"AGAIN",
            got.decode(),
        )
    finally:
        for server in servers:
            server.close()
        sa.close()


# --- blocking checks of the Win32 calls ----------------------------------------------


def sync_checks(my_sid: str) -> None:
    base = rf"\\.\pipe\oauth-bridge-probe-sync-{os.getpid()}"

    def granted_to_us() -> object:
        sa = SecurityAttributes(f"D:P(A;;GA;;;{my_sid})")
        try:
            handle = secure_pipe(base + "-ours", sa, overlapped=False, first=True)
        finally:
            sa.close()
        try:
            thread = serve_one_blocking(handle)
            reply = exchange(base + "-ours", b"hello")
            thread.join(10)
            seen = thread.seen  # type: ignore[attr-defined]
            if reply != b"HELLO" or seen.get("pid") != os.getpid() or "error" in seen:
                raise RuntimeError(f"reply {reply!r}, server saw {seen}")
            return {"reply": reply.decode(), "server saw": seen}
        finally:
            _winapi.CloseHandle(handle)

    attempt(
        "CreateNamedPipeW(PIPE_REJECT_REMOTE_CLIENTS, D:P(A;;GA;;;<our SID>)) + client",
        granted_to_us,
    )

    def dacl_kept() -> object:
        wanted = f"D:P(A;;GA;;;{my_sid})"
        sa = SecurityAttributes(wanted)
        try:
            handle = secure_pipe(base + "-dacl", sa, overlapped=False, first=True)
        finally:
            sa.close()
        try:
            got = dacl_of(handle)
        finally:
            _winapi.CloseHandle(handle)
        if not got.startswith("D:P(") or my_sid not in got:
            raise RuntimeError(f"asked for {wanted}, the pipe has {got}")
        return got

    attempt("GetSecurityInfo reads the pipe's DACL back", dacl_kept)

    # Informational on Wine (Windows: a second server gets error 5; asyncio relies on it).
    def second_first_instance() -> object:
        sa = SecurityAttributes(f"D:P(A;;GA;;;{my_sid})")
        try:
            handle = secure_pipe(base + "-first", sa, overlapped=False, first=True)
            try:
                try:
                    other = secure_pipe(base + "-first", sa, overlapped=False, first=True)
                except OSError as exc:
                    if exc.winerror != ERROR_ACCESS_DENIED:
                        raise
                    return f"refused: {exc}"
                _winapi.CloseHandle(other)
                raise RuntimeError("a second FILE_FLAG_FIRST_PIPE_INSTANCE server was allowed")
            finally:
                _winapi.CloseHandle(handle)
        finally:
            sa.close()

    attempt(
        "FILE_FLAG_FIRST_PIPE_INSTANCE refuses a second server (Windows: error 5)",
        second_first_instance,
        required=False,
    )

    # Informational on Wine: does the pipe's DACL keep a client out? (Windows: yes, error 5.)
    check = "a DACL granting only SYSTEM keeps us out (Windows: error 5)"
    try:
        sa = SecurityAttributes("D:P(A;;GA;;;SY)")
        try:
            handle = secure_pipe(base + "-system", sa, overlapped=False, first=True)
        finally:
            sa.close()
    except OSError as exc:
        report(check, False, f"could not create the pipe: {exc}", required=False)
        return
    try:
        try:
            client = open_client(base + "-system")
        except OSError as exc:
            report(check, exc.winerror == ERROR_ACCESS_DENIED, str(exc), required=False)
        else:
            _winapi.CloseHandle(client)
            report(
                check, False, "the client opened the pipe: the DACL is not enforced", required=False
            )
    finally:
        _winapi.CloseHandle(handle)


def client_main(name: str) -> None:
    """The child process's side: one exchange, then report pid and reply."""
    reply = exchange(name, b"from child")
    print(json.dumps({"pid": os.getpid(), "reply": reply.decode()}))


def main() -> int:
    my_sid = attempt(
        "OpenProcessToken/GetTokenInformation(TokenUser)/ConvertSidToStringSidW",
        lambda: token_sid(kernel32.GetCurrentProcess()),
    )
    if not isinstance(my_sid, str):
        return 1
    report("SID looks like S-1-5-21-...", my_sid.startswith("S-1-5-"), my_sid)
    sync_checks(my_sid)
    loop = asyncio.ProactorEventLoop()
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio_checks(my_sid), 120))
    except Exception as exc:
        report("asyncio named pipe checks", False, f"{type(exc).__name__}: {exc}")
    try:
        loop.run_until_complete(asyncio.wait_for(asyncio_secure_server(my_sid), 60))
    except Exception as exc:
        report("asyncio secure pipe server", False, f"{type(exc).__name__}: {exc}")
    finally:
        loop.close()
    failed = list(failures)
    report("summary", not failed, {"failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client_main(sys.argv[2])
    else:
        sys.exit(main())
