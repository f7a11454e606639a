"""JSON over HTTP/1.1 on the control channel, for a blocking caller and for asyncio alike.

The channel is the system's (``bridge.platform``): ``control.sock`` on Linux, the
user's named pipe on Windows.

A few lines of HTTP instead of ``http.client``: that module pulls in ``email`` and
``ssl`` (about 13 ms of a CLI call), and asyncio has no HTTP client of its own. Each
call is one connection with ``Connection: close``, so an answer ends where the socket
does. Foreign errors become ``DaemonUnavailable`` here, in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bridge.errors import DaemonUnavailable, UsageError
from bridge.platform import connect, open_connection

# An answer of the control API is a login object or a list of them: never near this.
MAX_ANSWER_BYTES = 16 << 20


class Answer:
    """One answer of the control API: its HTTP status and its parsed JSON body (or None)."""

    __slots__ = ("body", "status")

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body

    @property
    def message(self) -> str:
        """The daemon's own sentence for a refusal, or the bare HTTP status."""
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return str(self.body["message"])
        return f"HTTP {self.status}"


def encode_request(
    method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
) -> bytes:
    """Render one request; the daemon's Host check is for the TCP port, not this socket."""
    payload = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n"
    for name, value in (headers or {}).items():
        if not value.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            # A credential from the environment: never sent as half a header line.
            raise UsageError(
                f"the {name} header would hold a non-ASCII or control character; check the "
                "credential it comes from (LANGSMITH_API_KEY, LANGSMITH_WORKSPACE_ID, "
                "OAUTH_BRIDGE_BEARER_TOKEN)"
            )
        head += f"{name}: {value}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    head += f"Content-Length: {len(payload)}\r\n\r\n"
    return head.encode("ascii") + payload


def decode_answer(raw: bytes) -> Answer:
    """Parse a whole HTTP/1.1 response (read to the end of the connection)."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError("not an HTTP/1.1 response")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        rest = _unchunk(rest)
    elif "content-length" in headers:
        rest = rest[: int(headers["content-length"])]
    try:
        parsed = json.loads(rest) if rest.strip() else None
    except ValueError:
        parsed = None
    return Answer(int(parts[1]), parsed)


def _unchunk(data: bytes) -> bytes:
    body = bytearray()
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            return bytes(body)
        body += data[:size]
        data = data[size + 2 :]


def _unavailable(socket_path: Path, exc: BaseException) -> DaemonUnavailable:
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return DaemonUnavailable(
            f"no oauth-bridge daemon answers on {socket_path} ({exc.strerror})"
        )
    if isinstance(exc, TimeoutError):
        return DaemonUnavailable(
            f"the oauth-bridge daemon on {socket_path} did not answer in time", timed_out=True
        )
    return DaemonUnavailable(
        f"the oauth-bridge daemon on {socket_path} did not answer ({type(exc).__name__})"
    )


class ControlClient:
    """Speak JSON over ``control.sock``, blocking; no daemon there raises DaemonUnavailable."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and return its answer, waiting at most ``timeout`` seconds."""
        request = encode_request(method, path, body, headers)
        sock = None
        try:
            sock = connect(self.socket_path, timeout)
            sock.sendall(request)
            raw = bytearray()
            while chunk := sock.recv(1 << 16):
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    raise ValueError("the answer is too large")
            return decode_answer(bytes(raw))
        except (OSError, ValueError) as exc:
            raise _unavailable(self.socket_path, exc) from None
        finally:
            if sock is not None:
                sock.close()


class AsyncControlClient:
    """The same calls on asyncio's own Unix-socket streams: no thread, cancellable."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109  # the blocking client's signature, on purpose
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """Send one request and return its answer, waiting at most ``timeout`` seconds."""
        import asyncio  # here: a CLI call that never awaits should not pay for asyncio

        request = encode_request(method, path, body, headers)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await open_connection(self.socket_path)
                try:
                    writer.write(request)
                    await writer.drain()
                    raw = await reader.read(MAX_ANSWER_BYTES + 1)
                    while chunk := await reader.read(1 << 16):
                        raw += chunk
                        if len(raw) > MAX_ANSWER_BYTES:
                            raise ValueError("the answer is too large")
                finally:
                    writer.close()
            return decode_answer(raw)
        except (OSError, ValueError, TimeoutError) as exc:
            raise _unavailable(self.socket_path, exc) from None
