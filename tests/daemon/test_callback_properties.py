"""Property: arbitrary query strings on the callback never give a 5xx, never forward unregistered."""

from __future__ import annotations

import asyncio
import http.client
import threading
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.client.transport import ControlClient
from bridge.paths import Paths
from tests.conftest import DaemonProcess, daemon_environ, start_process, wait_ready
from tests.control_plane_double import ControlPlaneDouble

REGISTERED = [f"registered-state-{i}" for i in range(40)]
NAMES = ["code", "state", "iss", "error", "error_description", "x", "", "code[]", "STATE"]


class ThreadedControlPlane:
    """The control-plane double on its own event loop, for tests that block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.double = ControlPlaneDouble()

    def __enter__(self) -> ControlPlaneDouble:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.double.start(), self.loop).result(10)
        return self.double

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.double.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DaemonProcess, ControlPlaneDouble]]:
    base = tmp_path_factory.mktemp("prop")
    paths = Paths(
        runtime_dir=base / "run", state_dir=base / "state", config_file=base / "config.toml"
    )
    with ThreadedControlPlane() as double:
        proc = start_process(paths, daemon_environ(paths, double.url))
        try:
            wait_ready(proc)
            client = ControlClient(paths.control_socket)
            for state in REGISTERED:
                assert (
                    client.request(
                        "POST", "/v1/logins", {"provider_id": "github", "state": state}
                    ).status
                    == 201
                )
            yield proc, double
        finally:
            proc.process.kill()
            proc.process.wait(10)


values = st.one_of(
    st.sampled_from(REGISTERED),
    st.text(max_size=30),
    st.sampled_from(["access_denied", "", "%", "%%", "%zz", "\x00", "a&b=c", "😀"]),
)
pairs = st.lists(st.tuples(st.sampled_from(NAMES) | st.text(max_size=8), values), max_size=6)
raw = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=80,
)


def encode(items: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.one_of(pairs.map(encode), raw),
    provider=st.sampled_from(["github", "google", "x%2Fy", "%00", "a%20b"]),
    method=st.sampled_from(["GET", "POST"]),
)
def test_arbitrary_callbacks_never_5xx_and_never_forward_unregistered(
    live: tuple[DaemonProcess, ControlPlaneDouble], query: str, provider: str, method: str
) -> None:
    proc, double = live
    port = int(proc.info()["url"].rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if method == "GET":
            connection.request("GET", f"/callback/{provider}?{query}")
        else:
            connection.request(
                "POST",
                f"/callback/{provider}",
                body=query.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        status = connection.getresponse().status
    finally:
        connection.close()

    assert status < 500
    forwarded = Counter(c.body.get("state") for c in double.calls if isinstance(c.body, dict))
    assert set(forwarded) <= set(REGISTERED)
    assert all(n == 1 for n in forwarded.values())
