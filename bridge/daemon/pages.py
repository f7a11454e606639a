"""The browser's result pages: self-contained HTML, every provider word escaped."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from bridge.daemon.model import Login

# (heading, what to do next, accent colour) for each page status.
WORDING: dict[str, tuple[str, str, str]] = {
    "succeeded": ("Connected", "You can close this tab and return to your application.", "#1a7f37"),
    "failed": ("Could not connect", "Nothing more is needed from you on this page.", "#cf222e"),
    "denied": (
        "Access was denied",
        "The provider reported that access was not granted. "
        "Return to your application if you want to try again.",
        "#9a6700",
    ),
    "expired": (
        "This login expired",
        "It waited too long for the browser. Start the login again from your application.",
        "#9a6700",
    ),
    "cancelled": (
        "This login was cancelled",
        "Your application cancelled it. Start it again if you still want to connect.",
        "#57606a",
    ),
    "forwarding": (
        "Finishing sign-in…",
        "This page shows the outcome by itself in a moment.",
        "#0969da",
    ),
    "pending": (
        "Waiting for the provider",
        "This login has not come back from the provider yet.",
        "#0969da",
    ),
    "invalid": (
        "This is not a valid sign-in response",
        "Nothing was sent anywhere. Start the login again from your application.",
        "#cf222e",
    ),
    "forbidden": (
        "This sign-in belongs to another user of this computer",
        "oauth-bridge serves only the user who runs it; nothing was used or sent. Sign in "
        "from your own account's application.",
        "#cf222e",
    ),
    "unknown": (
        "No login is waiting for this response",
        "It may have expired, been used already, or been started elsewhere. Nothing was "
        "sent anywhere. Start the login again from your application.",
        "#cf222e",
    ),
}

STYLE = """
:root { color-scheme: light dark; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       display: grid; min-height: 100vh; place-items: center; background: Canvas; }
main { max-width: 34rem; padding: 2rem; border-top: 6px solid var(--accent); }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
p { margin: .5rem 0; }
.detail { font-family: ui-monospace, monospace; font-size: .9rem; opacity: .8;
          overflow-wrap: anywhere; }
footer { margin-top: 1.5rem; font-size: .8rem; opacity: .6; }
"""


# What went wrong, for the person at the browser: by error code, never LangSmith's own
# words (the application that waits has those, and they talk of HTTP and API keys).
FAILURES: dict[str, str] = {
    "control_plane_rejected": "LangSmith refused to finish the connection. Your application "
    "has the details; check its LangSmith settings, then try again.",
    "validation_error": "LangSmith refused to finish the connection. Your application has "
    "the details.",
    "control_plane_error": "LangSmith could not finish the connection just now. Try again in "
    "a moment from your application.",
    "control_plane_unreachable": "LangSmith could not be reached from this computer. Check "
    "the network, then try again from your application.",
    "issuer_mismatch": "The answer did not come from the expected sign-in service, so "
    "nothing was sent anywhere. Start again from your application.",
    "interrupted": "oauth-bridge stopped while it was finishing. Start again from your "
    "application.",
    "credentials_lost": "oauth-bridge restarted since this login began, and nothing was "
    "sent. Start again from your application.",
}


def render(
    page_status: str,
    *,
    login: Login | None = None,
    reason: str = "",
    provider_names: Mapping[str, str] | None = None,
) -> str:
    """Render the page for a status; ``reason`` and the login's result are escaped.

    The provider is shown by its configured display name ("GitHub"), and the
    application by the name it registered with, where there are such names.
    """
    heading, advice, accent = WORDING.get(page_status, WORDING["unknown"])
    app = login.client_name if login is not None and login.client_name else "your application"
    lines = [f"<p>{escape(advice.replace('your application', app))}</p>"]
    provider = ""
    if login is not None:
        name = (provider_names or {}).get(login.provider_id, login.provider_id)
        provider = f" to {escape(name)}"
        result = login.result or {}
        error = str(result.get("error") or "")
        if page_status == "failed" and error == "provider_error":
            said = result.get("error_description") or result.get("provider_error") or ""
            lines.append(
                f'<p class="detail">{escape(name)} reported an error: {escape(str(said))}</p>'
            )
        elif page_status == "failed" and error in FAILURES:
            lines.append(f"<p>{escape(FAILURES[error].replace('your application', app))}</p>")
        elif page_status == "denied" and isinstance(result.get("error_description"), str):
            lines.append(f'<p class="detail">{escape(result["error_description"])}</p>')
    if reason:
        lines.append(f'<p class="detail">{escape(reason)}</p>')
    title = f"{heading}{provider}" if page_status in ("succeeded", "failed") else heading
    return _page(page_status, title, lines, accent)


def render_home() -> str:
    """Render what ``/`` shows: that the bridge runs, and that there is nothing to do here."""
    lines = [
        "<p>This is the local sign-in helper that desktop applications use. There is "
        "nothing to do on this page: when an application asks you to sign in, the "
        "provider sends your browser back here by itself.</p>"
    ]
    return _page("unknown", "oauth-bridge is running", lines, "#0969da")


def render_self_test(seen: bool) -> str:
    """Render the page ``doctor``'s one-time address shows a browser."""
    if seen:
        lines = [
            "<p>This browser reaches oauth-bridge: sign-ins will come back here. "
            "You can close this tab.</p>"
        ]
        return _page("unknown", "This browser reaches oauth-bridge", lines, "#1a7f37")
    lines = [
        "<p>This address was used already, or was never given out. Run "
        "'oauth-bridge doctor --browser' again for a new one.</p>"
    ]
    return _page("unknown", "This check address is not valid", lines, "#9a6700")


def _page(page_status: str, title: str, lines: list[str], accent: str) -> str:
    status = escape(page_status, quote=True)
    # No script needed to see the outcome: a page still finishing reloads itself.
    refresh = '<meta http-equiv="refresh" content="2">\n' if page_status == "forwarding" else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta name="oauth-bridge-status" content="{status}">\n'
        + refresh
        + '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)} · oauth-bridge</title>\n"
        f"<style>{STYLE}main {{ --accent: {accent}; }}</style></head>\n"
        f"<body><main><h1>{escape(title)}</h1>\n"
        + "\n".join(lines)
        + "\n<footer>oauth-bridge, on this computer</footer></main></body></html>\n"
    )
