"""The control API's client for the CLI: stdlib only, so a CLI call stays fast to start."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import DaemonUnavailable


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("bridge", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return str(self.body["message"])
        return f"HTTP {self.status}"


class ControlClient:
    """Speak JSON over ``control.sock``; a daemon that is not there raises DaemonUnavailable."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 10.0) -> Answer:
        connection = _UnixConnection(self.socket_path, timeout)
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonUnavailable(
                f"no oauth-bridge daemon answers on {self.socket_path} ({exc.strerror})"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonUnavailable(
                f"the oauth-bridge daemon on {self.socket_path} did not answer "
                f"({type(exc).__name__})"
            ) from None
        finally:
            connection.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Answer(response.status, parsed)
