"""A provider id is one path segment, and a name shown to people steers no display."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningDaemon
from tests.control_plane_double import ControlPlaneDouble

# Every character a provider id must not hold: C0, DEL, C1 (U+0085 is a line break to
# some readers, U+009B a CSI), bidi embeddings, overrides, isolates and marks, and the
# line and paragraph separators.
FORBIDDEN = [
    "\x00",
    "\x1b",
    "\x7f",
    *(chr(c) for c in range(0x80, 0xA0)),
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    "\u200e",
    "\u200f",
    "\u061c",
    "\u2028",
    "\u2029",
]


async def call(bridge: RunningDaemon, body: dict[str, Any]) -> tuple[int, Any]:
    async with bridge.control.post("http://bridge/v1/logins", json=body) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("shape", ["expect", "agent-auth"])
@pytest.mark.parametrize("character", FORBIDDEN, ids=lambda c: f"U+{ord(c):04X}")
async def test_a_provider_id_with_a_control_or_bidi_character_is_422(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble, character: str, shape: str
) -> None:
    extra: dict[str, Any] = {"state": "s"} if shape == "expect" else {"scopes": ["repo"]}

    status, answer = await call(bridge, {"provider_id": f"git{character}hub", **extra})

    assert status == 422, answer
    assert "provider_id" in str(answer["detail"])
    assert bridge.services.logins.store.pending_count == 0
    assert control_plane.calls == []


@pytest.mark.parametrize("character", FORBIDDEN, ids=lambda c: f"U+{ord(c):04X}")
async def test_a_client_name_with_a_control_or_bidi_character_is_422(
    bridge: RunningDaemon, character: str
) -> None:
    body = {"provider_id": "github", "state": "s", "client_name": f"my{character}app"}

    status, answer = await call(bridge, body)

    assert status == 422, answer
    assert "client_name" in str(answer["detail"])


@pytest.mark.parametrize("provider_id", ["", ".", "..", "a/b", "/", "github/"])
async def test_a_provider_id_that_is_not_one_segment_is_422(
    bridge: RunningDaemon, provider_id: str
) -> None:
    status, answer = await call(bridge, {"provider_id": provider_id, "state": "s"})

    assert status == 422, answer


@pytest.mark.parametrize("provider_id", ["github", "google-workspace", "my_app.v2", "日本", "..."])
async def test_a_provider_id_of_one_segment_is_taken(
    bridge: RunningDaemon, provider_id: str
) -> None:
    status, answer = await call(bridge, {"provider_id": provider_id, "state": f"s-{provider_id}"})

    assert status == 201, answer
    assert answer["provider_id"] == provider_id
