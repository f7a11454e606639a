"""The control API's OpenAPI document is generated from its models, and the answers match them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge.daemon.control_schema import (
    AllowLoopbackResult,
    CreatedLogin,
    DaemonStatus,
    LoginList,
    LoginObject,
    Problem,
)
from bridge.daemon.openapi import render
from tests.conftest import REPO, RunningDaemon
from tests.control_plane_double import ControlPlaneDouble

DOCUMENT = REPO / "docs" / "control-api.openapi.json"


def test_the_committed_document_is_what_the_models_generate() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(), (
        "docs/control-api.openapi.json is stale: run 'python -m bridge.daemon.openapi'"
    )


async def call(bridge: RunningDaemon, method: str, path: str, **kw: Any) -> Any:
    async with bridge.control.request(method, f"http://bridge{path}", **kw) as response:
        return await response.json()


async def test_every_answer_is_what_the_document_says(
    bridge: RunningDaemon, control_plane: ControlPlaneDouble
) -> None:
    control_plane.allow("github", f"{bridge.url}/callback/github")
    expect = {"provider_id": "github", "state": "st-doc"}
    agent = {"provider_id": "github", "scopes": ["repo"]}

    created = await call(bridge, "POST", "/v1/logins", json=expect)
    started = await call(bridge, "POST", "/v1/logins", json=agent)
    conflict = await call(bridge, "POST", "/v1/logins", json=expect)
    cancelled = await call(bridge, "DELETE", f"/v1/logins/{created['id']}")
    listed = await call(bridge, "GET", "/v1/logins")
    status = await call(bridge, "GET", "/v1/status")
    allowed = await call(bridge, "POST", "/v1/providers/github/allow-loopback", json={})

    CreatedLogin.model_validate(created, strict=True)
    assert CreatedLogin.model_validate(started).auth_url is not None
    Problem.model_validate(conflict)
    LoginObject.model_validate(cancelled)
    assert len(LoginList.model_validate(listed).logins) == 2
    DaemonStatus.model_validate(status)
    AllowLoopbackResult.model_validate(allowed)


def test_the_generator_writes_the_document_where_it_is_told(tmp_path: Path) -> None:
    from bridge.daemon.openapi import main

    target = tmp_path / "openapi.json"

    assert main([str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render()
