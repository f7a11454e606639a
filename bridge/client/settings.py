"""What a tool's process reads of the user's config file: the callback, and providers' names.

The daemon validates the whole file (bridge.daemon.config); a tool reads only the two
keys that change what it does or says, with the standard library's tomllib, and leaves a
broken file for the daemon to name.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.client.reach import Choice, configured_callback, parse_callback
from bridge.paths import Paths


@dataclass(frozen=True)
class ToolSettings:
    """The config file's keys a tool uses, with the environment's say first."""

    callback: Choice | None = None
    provider_names: Mapping[str, str] = field(default_factory=dict)

    def provider_name(self, provider_id: str) -> str:
        """How to name a provider to people: its configured name, else its id."""
        return self.provider_names.get(provider_id, provider_id)


def config_file_of(paths: Paths, environ: Mapping[str, str]) -> Path:
    named = environ.get("OAUTH_BRIDGE_CONFIG")
    return Path(named) if named else paths.config_file


def tool_settings(paths: Paths, environ: Mapping[str, str] | None = None) -> ToolSettings:
    """Read the callback (OAUTH_BRIDGE_CALLBACK, else the file's) and the providers' names."""
    env = os.environ if environ is None else environ
    config_file = config_file_of(paths, env)
    document: dict[str, Any] = {}
    try:
        with open(config_file, "rb") as handle:
            document = tomllib.load(handle)
    except (OSError, ValueError):
        pass  # no file, or one the daemon will name the problem of
    callback = configured_callback(env)
    if callback is None and document.get("callback") is not None:
        callback = parse_callback(str(document["callback"]), source=f"'callback' in {config_file}")
    names = document.get("provider_names")
    provider_names = (
        {str(k): str(v) for k, v in names.items() if isinstance(v, str)}
        if isinstance(names, dict)
        else {}
    )
    return ToolSettings(callback=callback, provider_names=provider_names)
