"""Checks a tool's command makes before the browser opens: will this daemon do for us?"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bridge.client.api import Bridge
from bridge.client.terminal import printable, say


def warn_of_other_settings(bridge: Bridge, environ: Mapping[str, str] | None = None) -> None:
    """Warn when this environment names another control plane than the daemon uses.

    An auto-started daemon keeps the control plane of whichever tool started it. (Another
    API key is no matter: this tool's own credentials go with each of its logins.)
    """
    env = os.environ if environ is None else environ
    status = bridge.daemon_status
    wanted_url = env.get("OAUTH_BRIDGE_CONTROL_PLANE_URL", "").rstrip("/")
    if wanted_url and wanted_url != str(status.get("control_plane_url", "")).rstrip("/"):
        say(
            f"warning: the running oauth-bridge (pid {status.get('pid')}) uses another "
            f"control plane ({printable(status.get('control_plane_url'))}) than this "
            "environment names: another tool or shell started it. To use yours: "
            "'oauth-bridge stop', then run this again."
        )


def warn_without_credentials(bridge: Bridge, environ: Mapping[str, str] | None = None) -> None:
    """Say so before the browser opens when neither this tool nor the daemon has a credential."""
    env = os.environ if environ is None else environ
    if env.get("LANGSMITH_API_KEY") or env.get("OAUTH_BRIDGE_BEARER_TOKEN"):
        return  # this tool's own go with the login
    sources = bridge.daemon_status.get("credentials") or {}
    if sources and not (sources.get("api_key") or sources.get("bearer_token")):
        say(
            "warning: the daemon has no LangSmith credential (no API key, no bearer token), so "
            "LangSmith will refuse this login. Set LANGSMITH_API_KEY (or api_key_file in the "
            "config file) where the daemon starts, then 'oauth-bridge stop' and try again."
        )
