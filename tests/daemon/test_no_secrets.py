"""Canary values for code, state, API key and bearer, through every path: never in a log or file."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.client.transport import ControlClient
from bridge.paths import Paths
from tests.conftest import DaemonProcess, daemon_environ, free_port, start_process, wait_ready
from tests.control_plane_double import ControlPlaneDouble

CODE = "CANARYCODE7f3a9"
STATE = "CANARYSTATE1b2c3"
API_KEY = "CANARYAPIKEY99d8"
BEARER = "CANARYBEARER5e6f"
CANARIES = (CODE, STATE, API_KEY, BEARER)


def echoing_422(body: Any) -> dict[str, Any]:
    """FastAPI's 422 echoes the input: the control plane's answer may hold the code."""
    return {
        "detail": [
            {
                "type": "value_error",
                "loc": ["body", "code"],
                "msg": f"bad code {CODE}",
                "input": {"code": CODE, "state": STATE},
            }
        ]
    }


async def run_flow(
    paths: Paths, control_plane: ControlPlaneDouble, port: int, n: int, setup: Any
) -> None:
    """Register a canary state, let ``setup`` script the double, and play the browser."""
    state = f"{STATE}{n}"
    answer = ControlClient(paths.control_socket).request(
        "POST",
        "/v1/logins",
        {"provider_id": "github", "state": state, "expected_issuer": "https://issuer"},
    )
    assert answer.status == 201
    query = setup(control_plane, state)
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(
                f"http://127.0.0.1:{port}/callback/github?{query}",
                timeout=aiohttp.ClientTimeout(total=20),
            ) as response:
                await response.read()
        except aiohttp.ClientError:
            pass
        ControlClient(paths.control_socket).request(
            "POST",
            "/v1/callbacks",
            {"url": f"http://127.0.0.1:{port}/callback/github?{query}"},
            timeout=20,
        )
    control_plane.script.hang = False
    control_plane.script.queue.clear()


def script(
    status: int | None = None,
    body: Any = None,
    *,
    hang: bool = False,
    query: str = "code={code}&state={state}",
) -> Any:
    def setup(double: ControlPlaneDouble, state: str) -> str:
        if status is not None:
            double.answer(status, body)
        double.script.hang = hang
        return query.format(code=CODE, state=state)

    return setup


FLOWS = [
    script(),  # succeeded, and the control plane's body echoes nothing
    script(200, {"access_token": CODE, "state": STATE}),  # a body holding secrets
    script(401, {"detail": f"bad key {API_KEY}"}),
    script(403, b"<html>forbidden " + CODE.encode() + b"</html>"),
    script(422, echoing_422(None)),
    script(500, {"trace": f"code={CODE} state={STATE}"}),
    script(503, {"detail": "down"}),
    script(200, b"<html>proxy " + STATE.encode() + b"</html>"),
    script(query="error=access_denied&error_description=no&state={state}"),
    script(query="error=server_error&state={state}"),
    script(query="code={code}&state={state}&iss=https%3A%2F%2Fevil"),
    script(query="code={code}&code={code}&state={state}"),  # duplicated: invalid
    script(query="code={code}&state=UNKNOWN{state}"),  # unknown state
    script(query="code={code}"),  # missing state
]


async def test_no_canary_reaches_any_log_or_the_state_dir(
    paths: Paths, control_plane: ControlPlaneDouble, tmp_path: Path
) -> None:
    port = free_port()
    env = daemon_environ(
        paths,
        control_plane.url,
        LANGSMITH_API_KEY=API_KEY,
        OAUTH_BRIDGE_BEARER_TOKEN=BEARER,
        OAUTH_BRIDGE_LOG_LEVEL="debug",
        OAUTH_BRIDGE_REQUEST_TIMEOUT_SECONDS="1",
        OAUTH_BRIDGE_FORWARD_DEADLINE_SECONDS="1",
    )
    control_plane.api_key, control_plane.bearer = API_KEY, BEARER
    proc: DaemonProcess = start_process(paths, env, "--port", str(port))
    await asyncio.to_thread(wait_ready, proc)

    for n, setup in enumerate(FLOWS):
        await run_flow(paths, control_plane, port, n, setup)
    # A forward cut off by the control plane hanging past the request timeout.
    await run_flow(paths, control_plane, port, 100, script(hang=True))
    control_plane.release.clear()
    await run_flow(paths, control_plane, port, 101, script())
    # The control plane unreachable.
    await control_plane.stop()
    await run_flow(paths, control_plane, port, 102, script())
    # Malformed HTTP whose request line carries the canaries.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /callback/github?code={CODE}&state={STATE} HTTP/1.1\r\nHost: \x00\r\n"
        f"Bad Header {CODE}\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.read()
    writer.close()
    proc.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.process.wait, 20) == 0

    log = proc.log_text()
    assert "forwarding to the control plane" in log  # the log did record the flows
    for canary in CANARIES:
        assert canary not in log, f"{canary} leaked into the daemon log"
    for path in paths.state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for canary in CANARIES:
                assert canary.encode() not in data, f"{canary} leaked into {path.name}"


def test_log_redaction_covers_library_errors_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bridge.daemon.logs import RedactSecrets

    redact = RedactSecrets([API_KEY])
    record = logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Bad request line GET /cb?code=%s&state=%s key %s",
        (CODE, STATE, API_KEY),
        None,
    )
    redact.filter(record)

    assert all(c not in record.getMessage() for c in CANARIES)


async def test_the_access_log_shows_paths_without_query_strings(
    start_daemon: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    running = await start_daemon()
    await running.register("github", STATE)

    await running.hit(f"code={CODE}&state={STATE}")

    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(line.startswith("GET /callback/github 303 ") for line in lines), lines
    assert not [line for line in lines if "?" in line or CODE in line or STATE in line]
