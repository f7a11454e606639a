"""Behind a corporate proxy: HTTPS_PROXY with credentials, CONNECT, and SSL_CERT_FILE."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.client.transport import ControlClient
from bridge.paths import Paths
from tests.conftest import daemon_environ, require_tool, start_process, wait_ready
from tests.control_plane_double import ControlPlaneDouble


@dataclass
class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that records what it was asked to tunnel."""

    tunnels: list[tuple[str, str | None]] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        self.tunnels.append((f"{method} {target}", headers.get("Proxy-Authorization")))
        host, port = target.rsplit(":", 1)
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1, made by openssl(1)."""
    openssl = require_tool("openssl", "openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert


@pytest.fixture
async def tls_control_plane(certificate: Path) -> AsyncIterator[ControlPlaneDouble]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, certificate.with_name("key.pem"))
    double = ControlPlaneDouble()
    await double.start_on(0, ssl_context=context)
    yield double
    await double.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    running = ConnectProxy()
    await running.start()
    yield running
    await running.stop()


async def one_login(paths: Paths, env: dict[str, str]) -> dict[str, Any]:
    proc = start_process(paths, env)
    try:
        info = await asyncio.to_thread(wait_ready, proc)
        client = ControlClient(paths.control_socket)
        login = client.request("POST", "/v1/logins", {"provider_id": "github", "state": "st-tls"})
        async with (
            aiohttp.ClientSession() as browser,
            browser.get(f"{info['url']}/callback/github?code=c&state=st-tls") as response,
        ):
            assert response.status == 200
        done: dict[str, Any] = client.request("GET", f"/v1/logins/{login.body['id']}").body
        return done
    finally:
        proc.process.kill()
        await asyncio.to_thread(proc.process.wait, 10)


async def test_the_forward_tunnels_through_an_authenticating_proxy_to_a_private_ca(
    paths: Paths, tls_control_plane: ControlPlaneDouble, proxy: ConnectProxy, certificate: Path
) -> None:
    env = daemon_environ(
        paths,
        tls_control_plane.url,
        HTTPS_PROXY=f"http://alice:s3cret@127.0.0.1:{proxy.port}",
        NO_PROXY="",
        no_proxy="",
        SSL_CERT_FILE=str(certificate),
    )

    login = await one_login(paths, env)

    assert login["status"] == "succeeded", login
    port = tls_control_plane.url.rsplit(":", 1)[1]
    expected_auth = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert proxy.tunnels == [(f"CONNECT 127.0.0.1:{port}", expected_auth)]
    assert [c.body for c in tls_control_plane.calls] == [{"code": "c", "state": "st-tls"}]


async def test_an_untrusted_certificate_fails_the_forward(
    paths: Paths, tls_control_plane: ControlPlaneDouble
) -> None:
    env = daemon_environ(paths, tls_control_plane.url, SSL_CERT_FILE="/nonexistent.pem")

    login = await one_login(paths, env)

    assert (login["status"], login["result"]["error"]) == ("failed", "control_plane_unreachable")
    assert tls_control_plane.calls == []
