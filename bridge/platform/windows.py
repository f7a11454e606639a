r"""Windows: a named pipe per user, its peers' SIDs, msvcrt.locking, fsync.

The control channel is ``\\.\pipe\oauth-bridge-<SID>`` (the SID of this process's token):
every instance is created with an owner-only DACL and PIPE_REJECT_REMOTE_CLIENTS, the
daemon serves only a client whose process token has its SID, and a tool talks only to a
server whose process token has its own (a squatter that made the pipe first must not
receive a login). The pure parts (names, the SDDL, the SID comparison) are functions
that run and are tested anywhere; what calls Win32 sits below ``sys.platform == "win32"``.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

from bridge.errors import UnsafeRuntimeDir

NAME = "windows"
NOFOLLOW = 0  # os.open follows no symlink of its own accord here: there is no such flag
# What install-service runs: the start at sign-in in HKCU's Run key.
SERVICE_MODULE = "bridge.service.windows_run"
# Nothing hands the daemon listening sockets here: it binds its own (service_sockets).
SERVICE_MANAGER = "the Run key"
PIPE_PREFIX = "\\\\.\\pipe\\oauth-bridge-"
_SID = re.compile(r"S-1-[0-9]+(?:-[0-9]+){1,15}", re.IGNORECASE)


def pipe_name(sid: str) -> str:
    r"""The control pipe of the user ``sid``: \\.\pipe\oauth-bridge-S-1-5-21-..."""
    canonical = canonical_sid(sid)
    if canonical is None:
        raise ValueError(f"not a SID: {sid!r}")
    return PIPE_PREFIX + canonical


def owner_only_sddl(sid: str) -> str:
    """The pipe's security descriptor: a protected DACL granting all access to ``sid`` only."""
    canonical = canonical_sid(sid)
    if canonical is None:
        raise ValueError(f"not a SID: {sid!r}")
    return f"D:P(A;;GA;;;{canonical})"


def canonical_sid(text: object) -> str | None:
    """A string SID in its one spelling (``S-1-...``), or None if ``text`` is none."""
    if not isinstance(text, str) or not _SID.fullmatch(text.strip()):
        return None
    return "S" + text.strip()[1:]


def same_user(peer: int | str | None, own: int | str) -> bool:
    """Say whether a pipe's other end (its process token's SID) is this user.

    A peer whose SID could not be read, or that is no SID at all, is another user.
    """
    theirs, ours = canonical_sid(peer), canonical_sid(own)
    return theirs is not None and theirs == ours


def tcp_peer_owner(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """Who opened a loopback TCP connection: not told here (the daemon says so, once)."""
    return None


def tcp_listener_owner(port: int) -> int | None:
    """Who listens on a loopback port: not told here (no uid; Wine would read Linux's /proc)."""
    return None


def check_private_dir(path: Path, variable: str = "OAUTH_BRIDGE_RUNTIME_DIR") -> None:
    """Refuse ``path`` unless it is a directory (not a link); its ACL is the profile's.

    The default dirs are under the user's profile (AppData), which only that user and
    the administrators may enter; a mode and a uid, as Linux has, do not exist here.
    """
    try:
        info = path.lstat()
    except OSError as exc:
        raise UnsafeRuntimeDir(f"cannot use {path}: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeRuntimeDir(
            f"{path} is not a directory: refusing to use it; set {variable} to a directory "
            "of your own"
        )


def check_parents(path: Path) -> None:
    """Nothing to check by mode: a directory's ACL, not its parent's mode, guards it."""


def service_sockets() -> None:
    """None: a service started from the Run key binds its own sockets and pipe."""
    return None


def open_for_sync(path: Path | str) -> int:
    """A descriptor of our own, writable (FlushFileBuffers wants write access)."""
    return os.open(path, os.O_RDWR | os.O_BINARY | os.O_NOINHERIT)  # type: ignore[attr-defined,unused-ignore]


def sync_file(fd: int) -> None:
    """Put the file on disk (FlushFileBuffers, through _commit)."""
    os.fsync(fd)


if sys.platform == "win32":  # what calls Win32: mypy on Linux skips it, ruff lints it
    import _winapi
    import asyncio
    import asyncio.windows_events as windows_events
    import asyncio.windows_utils as windows_utils
    import contextlib
    import ctypes
    import functools
    import logging
    import msvcrt
    import signal
    import subprocess
    import time
    from collections.abc import Callable
    from ctypes import wintypes
    from typing import IO, Any

    from bridge.errors import DaemonUnavailable

    # What ends a tool's wait as Ctrl-C does (a kill, Ctrl-Break, the console closed).
    CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGBREAK)

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)

    TOKEN_QUERY = 0x0008
    TOKEN_USER_CLASS = 1
    PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
    SYNCHRONIZE = 0x00100000
    PIPE_TYPE_BYTE = 0x00000000
    PIPE_READMODE_BYTE = 0x00000000
    PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
    SDDL_REVISION_1 = 1
    ERROR_FILE_NOT_FOUND = 2
    ERROR_BROKEN_PIPE = 109
    ERROR_SEM_TIMEOUT = 121
    ERROR_PIPE_BUSY = 231
    ERROR_PIPE_NOT_CONNECTED = 233
    ERROR_OPERATION_ABORTED = 995
    WAIT_TIMEOUT = 258
    INVALID_HANDLE_VALUE = wintypes.HANDLE(-1).value

    class SECURITY_ATTRIBUTES(ctypes.Structure):  # Win32's name
        _fields_ = (
            ("nLength", wintypes.DWORD),
            ("lpSecurityDescriptor", wintypes.LPVOID),
            ("bInheritHandle", wintypes.BOOL),
        )

    class SID_AND_ATTRIBUTES(ctypes.Structure):  # Win32's name
        _fields_ = (("Sid", wintypes.LPVOID), ("Attributes", wintypes.DWORD))

    # Every HANDLE and pointer declared: ctypes' default int would cut them to 32 bits.
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    kernel32.LocalFree.argtypes = (wintypes.LPVOID,)
    kernel32.LocalFree.restype = wintypes.LPVOID
    for _call in ("GetNamedPipeClientProcessId", "GetNamedPipeServerProcessId"):
        getattr(kernel32, _call).argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.ULONG))
        getattr(kernel32, _call).restype = wintypes.BOOL
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
    advapi32.ConvertSidToStringSidW.argtypes = (
        wintypes.LPVOID,
        ctypes.POINTER(wintypes.LPWSTR),
    )
    advapi32.ConvertSidToStringSidW.restype = wintypes.BOOL
    advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.argtypes = (
        wintypes.LPCWSTR,
        wintypes.DWORD,
        ctypes.POINTER(wintypes.LPVOID),
        ctypes.POINTER(wintypes.ULONG),
    )
    advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW.restype = wintypes.BOOL

    def _winerror(what: str) -> OSError:
        code = ctypes.get_last_error()
        return OSError(None, f"{what}: {ctypes.FormatError(code)}", None, code)

    def _token_sid(process: int) -> str:
        token = wintypes.HANDLE()
        if not advapi32.OpenProcessToken(process, TOKEN_QUERY, ctypes.byref(token)):
            raise _winerror("OpenProcessToken")
        try:
            size = wintypes.DWORD()
            advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
            buffer = ctypes.create_string_buffer(size.value)
            if not advapi32.GetTokenInformation(
                token, TOKEN_USER_CLASS, buffer, size, ctypes.byref(size)
            ):
                raise _winerror("GetTokenInformation(TokenUser)")
            user = SID_AND_ATTRIBUTES.from_buffer(buffer)
            text = wintypes.LPWSTR()
            if not advapi32.ConvertSidToStringSidW(user.Sid, ctypes.byref(text)):
                raise _winerror("ConvertSidToStringSidW")
            try:
                return str(text.value)
            finally:
                kernel32.LocalFree(text)
        finally:
            kernel32.CloseHandle(token)

    def pid_sid(pid: int) -> str | None:
        """The SID of the user whose token ``pid`` runs with, or None if it cannot be read."""
        process = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
        if not process:
            return None
        try:
            return _token_sid(process)
        except OSError:
            return None
        finally:
            kernel32.CloseHandle(process)

    @functools.cache
    def own_identity() -> str:
        """This process's SID (its token's user)."""
        return _token_sid(kernel32.GetCurrentProcess())

    def effective_uid() -> int:
        """No uid here: the TCP port's owner lookup (Linux's /proc) never answers on Windows."""
        return -1

    def _pipe_pid(handle: int, call: str) -> int | None:
        pid = wintypes.ULONG()
        if not getattr(kernel32, call)(handle, ctypes.byref(pid)):
            return None
        return int(pid.value)

    def peer_identity(transport: Any) -> str | None:
        """The SID of the process at the client end of a control pipe connection."""
        pipe = transport.get_extra_info("pipe") if transport else None
        handle = getattr(pipe, "handle", None)
        if handle is None:
            return None
        pid = _pipe_pid(handle, "GetNamedPipeClientProcessId")
        return None if pid is None else pid_sid(pid)

    def _check_server(handle: int, address: Path) -> None:
        """Refuse a pipe whose server runs as another user (a squatter on our name)."""
        pid = _pipe_pid(handle, "GetNamedPipeServerProcessId")
        sid = None if pid is None else pid_sid(pid)
        if not same_user(sid, own_identity()):
            raise DaemonUnavailable(
                f"{address} is served by a process of another user (pid {pid}, {sid}), "
                "not by your oauth-bridge: refusing to send it anything"
            )

    # -- the control channel ------------------------------------------------------------

    def control_address(runtime_dir: Path) -> Path:
        """The user's control pipe (the runtime dir holds daemon.json, not the pipe)."""
        return Path(pipe_name(own_identity()))

    def control_exists(address: Path) -> bool:
        """Say whether a server has made the pipe (WaitNamedPipe: busy counts as there)."""
        try:
            _winapi.WaitNamedPipe(str(address), 1)
        except OSError as exc:
            return exc.winerror != ERROR_FILE_NOT_FOUND
        return True

    class PipeChannel:
        """A client end of the control pipe: sendall / recv / close, each bounded in time."""

        def __init__(self, handle: int, timeout: float) -> None:
            self.handle = handle
            self.timeout = timeout

        def _wait(self, ov: Any, err: int) -> int:
            if err == _winapi.ERROR_IO_PENDING:
                ms = max(1, int(self.timeout * 1000))
                if _winapi.WaitForMultipleObjects([ov.event], False, ms) == WAIT_TIMEOUT:
                    ov.cancel()
                    with contextlib.suppress(OSError):  # ERROR_OPERATION_ABORTED, as asked
                        ov.GetOverlappedResult(True)  # settle the cancelled I/O
                    raise TimeoutError("the control pipe did not answer in time")
            try:
                done, err = ov.GetOverlappedResult(True)
            except OSError as exc:  # BrokenPipeError: the far end closed (an EOF)
                if exc.winerror in (ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED):
                    return -1
                raise
            if err in (ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED):
                return -1
            if err:
                raise OSError(None, ctypes.FormatError(err), None, err)
            return int(done)

        def sendall(self, data: bytes) -> None:
            view = memoryview(data)
            while view:
                try:
                    ov, err = _winapi.WriteFile(self.handle, bytes(view), overlapped=True)
                except OSError as exc:
                    raise BrokenPipeError(str(exc)) from None
                done = self._wait(ov, err)
                if done < 0:
                    raise BrokenPipeError("the daemon closed the control pipe")
                view = view[done:]

        def recv(self, size: int) -> bytes:
            try:
                ov, err = _winapi.ReadFile(self.handle, size, overlapped=True)
            except OSError as exc:
                if exc.winerror in (ERROR_BROKEN_PIPE, ERROR_PIPE_NOT_CONNECTED):
                    return b""
                raise
            if self._wait(ov, err) < 0:
                return b""
            return bytes(ov.getbuffer())

        def close(self) -> None:
            if self.handle is not None:
                _winapi.CloseHandle(self.handle)
                self.handle = None  # type: ignore[assignment]

    def connect(address: Path, timeout: float) -> PipeChannel:
        """A blocking channel to the control pipe, once its server proved to be this user."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                handle = _winapi.CreateFile(
                    str(address),
                    _winapi.GENERIC_READ | _winapi.GENERIC_WRITE,
                    0,
                    _winapi.NULL,
                    _winapi.OPEN_EXISTING,
                    _winapi.FILE_FLAG_OVERLAPPED,
                    _winapi.NULL,
                )
                break
            except OSError as exc:
                if exc.winerror == ERROR_FILE_NOT_FOUND:
                    raise FileNotFoundError(2, "no such pipe", str(address)) from None
                if exc.winerror != ERROR_PIPE_BUSY:
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("every instance of the control pipe is busy") from None
                try:
                    _winapi.WaitNamedPipe(str(address), max(1, int(min(left, 1.0) * 1000)))
                except OSError as wait:
                    if wait.winerror not in (ERROR_SEM_TIMEOUT, ERROR_PIPE_BUSY):
                        raise
        try:
            _check_server(handle, address)
        except BaseException:
            _winapi.CloseHandle(handle)
            raise
        return PipeChannel(handle, timeout)

    async def open_connection(
        address: Path,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """asyncio's streams on the control pipe (a Proactor loop's create_pipe_connection)."""
        loop = asyncio.get_running_loop()
        create = getattr(loop, "create_pipe_connection", None)
        if create is None:
            raise OSError(None, "the control pipe needs asyncio's ProactorEventLoop (the default)")
        reader = asyncio.StreamReader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await create(lambda: protocol, str(address))
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        pipe = transport.get_extra_info("pipe")
        try:
            _check_server(pipe.handle, address)
        except BaseException:
            transport.close()
            raise
        return reader, writer

    class _SecurityAttributes:
        """SECURITY_ATTRIBUTES around a self-relative SD parsed from SDDL."""

        def __init__(self, sddl: str) -> None:
            self.descriptor = wintypes.LPVOID()
            if not advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                sddl, SDDL_REVISION_1, ctypes.byref(self.descriptor), None
            ):
                raise _winerror("ConvertStringSecurityDescriptorToSecurityDescriptorW")
            self.struct = SECURITY_ATTRIBUTES(
                ctypes.sizeof(SECURITY_ATTRIBUTES), self.descriptor, False
            )

        def close(self) -> None:
            if self.descriptor:
                kernel32.LocalFree(self.descriptor)
                self.descriptor = wintypes.LPVOID()

    class PipeListener:
        """The daemon's control pipe: each instance owner-only and local clients only."""

        def __init__(self, address: Path) -> None:
            self.address = str(address)
            self.security = _SecurityAttributes(owner_only_sddl(own_identity()))

        def _instance(self, first: bool) -> int:
            mode = _winapi.PIPE_ACCESS_DUPLEX | _winapi.FILE_FLAG_OVERLAPPED
            if first:  # a squatter that made the pipe first makes this fail (error 5)
                mode |= _winapi.FILE_FLAG_FIRST_PIPE_INSTANCE
            handle = kernel32.CreateNamedPipeW(
                self.address,
                mode,
                PIPE_TYPE_BYTE
                | PIPE_READMODE_BYTE
                | _winapi.PIPE_WAIT
                | PIPE_REJECT_REMOTE_CLIENTS,
                _winapi.PIPE_UNLIMITED_INSTANCES,
                65536,
                65536,
                0,
                ctypes.byref(self.security.struct),
            )
            if handle in (None, INVALID_HANDLE_VALUE):
                raise _winerror(f"CreateNamedPipeW({self.address})")
            return int(handle)

        async def serve(self, protocol_factory: Callable[[], Any]) -> list[Any]:
            """Serve ``protocol_factory`` on the pipe; returns asyncio's PipeServer(s)."""
            listener = self

            class SecurePipeServer(windows_events.PipeServer):
                def _server_pipe_handle(self, first: bool) -> Any:
                    if self.closed():
                        return None
                    pipe = windows_utils.PipeHandle(listener._instance(first))
                    self._free_instances.add(pipe)
                    return pipe

            loop = asyncio.get_running_loop()
            # start_serving_pipe makes its PipeServer (and the first instance) before it
            # returns, looking the class up in its module: swapped for that call only.
            original = windows_events.PipeServer
            windows_events.PipeServer = SecurePipeServer  # type: ignore[misc]
            try:
                try:
                    return list(await loop.start_serving_pipe(protocol_factory, self.address))
                except OSError as exc:
                    raise DaemonUnavailable(
                        f"cannot create the control pipe {self.address}: {exc}"
                    ) from None
            finally:
                windows_events.PipeServer = original  # type: ignore[misc]

        def close(self) -> None:
            self.security.close()

    def listen_control(address: Path) -> PipeListener:
        """The control pipe, made at serve() (a pipe exists only while it is served)."""
        return PipeListener(address)

    # -- locks --------------------------------------------------------------------------

    def try_lock(handle: IO[Any]) -> bool:
        """Lock the file's first byte without waiting; False when another holds it."""
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def lock(handle: IO[Any]) -> None:
        """Lock the file's first byte, waiting as long as it takes."""
        while not try_lock(handle):
            time.sleep(0.05)

    # -- the daemon's process -----------------------------------------------------------

    def process_exited(pid: int) -> bool:
        """Say whether the process is gone (its handle signalled, or none to open)."""
        try:
            handle = _winapi.OpenProcess(SYNCHRONIZE, False, pid)
        except OSError:
            return True
        try:
            return bool(_winapi.WaitForSingleObject(handle, 0) == _winapi.WAIT_OBJECT_0)
        finally:
            _winapi.CloseHandle(handle)

    def detached() -> dict[str, Any]:
        """Popen's options for a daemon that outlives its starter: no console of its own,
        and out of the starter's process group (its Ctrl-C is the tool's, not the daemon's)."""
        return {"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP}

    def harden_process(log: logging.Logger) -> None:
        """Nothing to set: files take the profile dir's ACL, and there is no core dump."""

    def stop_signals(
        loop: asyncio.AbstractEventLoop, stop: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``stop`` on Ctrl-C or Ctrl-Break (SIGINT, SIGBREAK); return the undo."""
        numbers = [signal.SIGINT, signal.SIGBREAK]
        previous = {signum: signal.getsignal(signum) for signum in numbers}

        def handler(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(stop)

        for signum in numbers:
            signal.signal(signum, handler)

        def undo() -> None:
            for signum, old in previous.items():
                signal.signal(signum, old)

        return undo
