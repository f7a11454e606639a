"""Schemathesis against a live daemon over its Unix socket: the control API is as documented.

One test per operation of docs/control-api.openapi.json, each sending the requests that
Schemathesis makes of it: the document's examples, its coverage cases (boundaries, every
enum value, a method the route does not take...) and generated ones, valid and not
(``mode: all``), from a fixed seed. Every check is on: not_a_server_error,
status_code_conformance, content_type_conformance, response_schema_conformance,
response_headers_conformance, positive_data_acceptance, negative_data_rejection,
missing_required_header, unsupported_method, max_response_time and the rest. (The
stateful ones, use_after_free and ensure_resource_availability, run only in its stateful
phase, from the document's links: it has none, as a DELETE here cancels a login and
keeps it, and a GET of a pending login may wait five minutes.)

The daemon runs in a thread of its own (tests/daemon/unix_http.py), with the
control-plane double, and is reached through its control socket by a requests adapter.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from bridge.paths import Paths
from tests.conftest import REPO
from tests.daemon.unix_http import LiveDaemon, live_daemon, unix_session

DOCUMENT = REPO / "docs" / "control-api.openapi.json"
SEED = 20261207
# Generated cases per operation; with its examples and coverage cases, a few hundred at most.
MAX_EXAMPLES = 100

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "base-url": "http://bridge",
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
        },
        "checks": {
            "enabled": True,
            # 502 (the control plane refused or failed) and 503 (too many pending, or
            # stopping) are documented answers of a gateway, not faults; a 500 still fails.
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "502", "503"]},
            # No request here waits on a login: every answer comes at once.
            "max_response_time": 10,
        },
        "operations": [
            {
                # A URL is the only thing the schema can say of a pasted address; whether it
                # is a callback of this daemon (its port) is the answer's 400.
                "include-path": "/v1/callbacks",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "403", "404", "409", "5xx"]
                    }
                },
            }
        ],
    }
)
schema = schemathesis.openapi.from_path(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDaemon]:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    paths = Paths(
        runtime_dir=root / "run", state_dir=root / "state", config_file=root / "config.toml"
    )
    with live_daemon(paths) as running:
        yield running


@pytest.fixture(scope="module")
def control(live: LiveDaemon) -> Iterator[requests.Session]:
    with unix_session(live.socket_path) as session:
        yield session


@schema.parametrize()
def test_every_operation_answers_as_the_document_says(
    case: Case[Any], control: requests.Session
) -> None:
    case.call_and_validate(session=control, timeout=30)
