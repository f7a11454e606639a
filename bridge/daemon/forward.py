"""The forward: POST {code, state} to the control plane once, and classify its answer."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.daemon.config import Credentials
from bridge.daemon.control_plane import MAX_ANSWER_BYTES, ControlPlane, Reply, Unreachable
from bridge.daemon.model import JSON, FailureCode, Outcome, Status


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(BaseModel):
    """The control plane's 422 body (FastAPI), as its OpenAPI document describes it."""

    detail: list[ValidationErrorItem] = []


async def forward(
    control_plane: ControlPlane,
    *,
    provider_id: str,
    code: str,
    state: str,
    credentials: Credentials | None = None,
) -> Outcome:
    """Send the code once; retry only where it cannot have reached the control plane."""
    url = control_plane.url("v2", "auth", "callback", provider_id)
    try:
        reply = await control_plane.send(
            "POST", url, json={"code": code, "state": state}, credentials=credentials
        )
    except Unreachable as exc:
        return unreachable(
            f"{exc.reason}; the code may have reached it, so it was not sent again"
            if exc.maybe_read
            else exc.reason
        )
    return classify(reply)


def classify(reply: Reply) -> Outcome:
    """Turn the control plane's answer into a login outcome, whatever its body holds."""
    status, raw, content_type = reply.status, reply.raw, reply.content_type
    body, is_json = _parse_json(raw)
    if 200 <= status < 300:
        if reply.truncated:
            # The code was used: the login succeeded, whatever the size of the answer.
            return Outcome(
                Status.SUCCEEDED,
                stored={
                    "control_plane_status": status,
                    "message": f"The control plane's answer was larger than "
                    f"{MAX_ANSWER_BYTES >> 20} MiB and was cut; its body is not kept.",
                },
                answer={"control_plane_body": None},
            )
        if raw.strip() and not is_json:
            return _failed(
                FailureCode.CONTROL_PLANE_ERROR,
                status,
                f"The control plane answered HTTP {status} with a non-JSON body ({content_type}); "
                "a proxy or captive portal may be in the way.",
            )
        return Outcome(
            Status.SUCCEEDED,
            stored={"control_plane_status": status},
            answer={"control_plane_body": body},
        )
    if status in (401, 403):
        return _failed(
            FailureCode.CONTROL_PLANE_REJECTED,
            status,
            f"The control plane refused the credentials (HTTP {status}). Check the API key "
            "(LANGSMITH_API_KEY or api_key_file), the workspace (LANGSMITH_WORKSPACE_ID) "
            "and the bearer token (OAUTH_BRIDGE_BEARER_TOKEN or bearer_token_file): your "
            "tool's, where its environment sets them, else the daemon's.",
        )
    if status == 422:
        detail: JSON = None
        if is_json:
            try:
                detail = HTTPValidationError.model_validate(body).model_dump()
            except ValidationError:
                detail = body
        return _failed(
            FailureCode.VALIDATION_ERROR,
            status,
            "The control plane rejected the callback as invalid (HTTP 422).",
            detail=detail,
        )
    if 400 <= status < 500:
        return _failed(
            FailureCode.CONTROL_PLANE_REJECTED,
            status,
            f"The control plane rejected the callback (HTTP {status}).",
            detail=body if is_json else None,
        )
    if status >= 500:
        return _failed(
            FailureCode.CONTROL_PLANE_ERROR,
            status,
            f"The control plane failed (HTTP {status}); the code was not sent again.",
            detail=body if is_json else None,
        )
    return _failed(
        FailureCode.CONTROL_PLANE_ERROR,
        status,
        f"The control plane answered with an unexpected HTTP {status}.",
    )


def _failed(code: FailureCode, status: int, message: str, *, detail: JSON = None) -> Outcome:
    answer: dict[str, JSON] = {} if detail is None else {"detail": detail}
    return Outcome(
        Status.FAILED,
        stored={"error": code.value, "message": message, "control_plane_status": status},
        answer=answer,
    )


def unreachable(reason: str) -> Outcome:
    return Outcome(
        Status.FAILED,
        stored={
            "error": FailureCode.CONTROL_PLANE_UNREACHABLE.value,
            "message": f"The control plane could not be reached: {reason}.",
        },
    )


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw.strip():
        return None, False
    try:
        return json.loads(raw), True
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, False
