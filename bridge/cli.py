"""The ``oauth-bridge`` command: parse, then hand over to the module that does the work.

Each command imports what it needs when it runs: the tools' commands (expect, status,
cancel, complete) never import aiohttp or pydantic, so a CLI call starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from bridge import __version__
from bridge.errors import EXIT_USAGE, BridgeError

EPILOG_EXIT_CODES = """\
exit codes:
  0   succeeded (or registered, without --wait)
  2   bad usage or bad configuration
  3   no daemon available (not running, could not start, port taken)
  10  the login failed        11  the provider denied access
  12  expired or timed out    13  cancelled
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oauth-bridge",
        description="A local OAuth loopback bridge: it receives the provider's redirect on "
        "127.0.0.1 and forwards code and state, once, to the LangSmith Deployment control plane.",
        epilog="examples:\n"
        "  oauth-bridge demo                      see the whole flow work, locally\n"
        '  oauth-bridge expect --provider github --auth-url "$URL" --open --wait\n'
        "  oauth-bridge status\n\n" + EPILOG_EXIT_CODES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"oauth-bridge {__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="show a traceback when something fails unexpectedly"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the daemon in the foreground",
        formatter_class=_Formatter,
        description="Run the daemon: callbacks on 127.0.0.1 and ::1, the control API on "
        "control.sock in the runtime dir. Settings: --flags > environment > config file.",
        epilog="example:\n  LANGSMITH_API_KEY=... oauth-bridge serve --port 0 --log-level debug\n\n"
        "exit codes: 0 stopped cleanly, 2 bad configuration or an unusable runtime or state dir, 3 another daemon runs or the "
        "port is taken",
    )
    serve.add_argument(
        "--config",
        metavar="FILE",
        help="config file (TOML; default: the user config dir's config.toml, "
        "env OAUTH_BRIDGE_CONFIG)",
    )
    serve.add_argument(
        "--host",
        help="loopback address to listen on: localhost (127.0.0.1 and "
        "::1, the default), 127.0.0.1 or ::1",
    )
    serve.add_argument("--port", type=int, help="TCP port (default 8765; 0 takes a free one)")
    serve.add_argument(
        "--control-plane",
        metavar="URL",
        dest="control_plane_url",
        help="control plane base URL (default https://api.host.langchain.com)",
    )
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        dest="idle_exit_seconds",
        help="exit after this long with no login under way and no connection "
        "(meant for systemd socket activation, which restarts on demand)",
    )

    expect = commands.add_parser(
        "expect",
        help="register a login and (optionally) wait for its outcome",
        formatter_class=_Formatter,
        description="Tell the daemon to expect a provider's redirect for one state, starting "
        "the daemon in the background if none runs (its log goes to daemon.log in the state "
        "dir). Without --wait it prints the login id on stdout (the login object with --json) "
        "and returns; with --wait it blocks until the login ends, and Ctrl-C cancels it.",
        epilog="examples:\n"
        '  oauth-bridge expect --provider github --auth-url "$AUTH_URL" --open --wait --json\n'
        '  oauth-bridge expect --provider google --state "$STATE" --wait --timeout 120\n\n'
        + EPILOG_EXIT_CODES,
    )
    expect.add_argument(
        "--provider",
        required=True,
        metavar="ID",
        help="provider id, as in /v2/auth/callback/{provider_id}",
    )
    which = expect.add_mutually_exclusive_group(required=True)
    which.add_argument("--state", metavar="S", help="the state the control plane made")
    which.add_argument(
        "--auth-url",
        metavar="URL",
        help="the authorization URL: its state is taken, its redirect_uri checked",
    )
    expect.add_argument(
        "--ttl",
        type=int,
        metavar="S",
        default=600,
        help="seconds the login stays pending (default 600, at most 3600)",
    )
    expect.add_argument(
        "--issuer",
        metavar="ISS",
        help="expected 'iss' of the redirect (RFC 9207); a mismatch fails it",
    )
    expect.add_argument(
        "--open", action="store_true", help="open the authorization URL in the browser"
    )
    expect.add_argument("--wait", action="store_true", help="block until the login ends")
    expect.add_argument(
        "--timeout", type=float, metavar="S", help="with --wait: give up after S seconds (exit 12)"
    )
    expect.add_argument(
        "--json",
        action="store_true",
        help="print the final login object on stdout, and nothing else there",
    )
    expect.add_argument(
        "--no-start",
        action="store_true",
        help="do not start a daemon when none runs (exit 3 instead)",
    )

    status = commands.add_parser(
        "status",
        help="show whether a daemon runs, and its recent logins",
        formatter_class=_Formatter,
        epilog="example:\n  oauth-bridge status --json\n\nexit codes: 0 running, 3 not running",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    cancel = commands.add_parser(
        "cancel",
        help="cancel a pending login",
        formatter_class=_Formatter,
        epilog="example:\n  oauth-bridge cancel Zx3k9QmP2aLr7Tb1\n\n"
        "exit codes: 0 cancelled, 2 no such login, 3 no daemon, 10 the login had already ended",
    )
    cancel.add_argument("id", help="the login id that expect printed")

    complete = commands.add_parser(
        "complete",
        help="finish a login from the address the browser ended on (paste fallback)",
        formatter_class=_Formatter,
        description="When the browser runs on another machine, its redirect to 127.0.0.1 "
        "fails there. Copy the address it ended on and give it here: the daemon processes it "
        "exactly as if the browser had delivered it.",
        epilog="example:\n  oauth-bridge complete 'http://127.0.0.1:8765/callback/github?code=...&state=...'"
        "\n\nexit codes: 0 succeeded, 10 failed or no login waits for that state, 11 denied, "
        "12 expired, 13 cancelled, 2 not a callback address of this daemon, 3 no daemon",
    )
    complete.add_argument("url", help="the full callback address, quoted")
    complete.add_argument("--json", action="store_true", help="print the login object as JSON")

    demo = commands.add_parser(
        "demo",
        help="run the whole flow locally against a demo provider and control plane",
        formatter_class=_Formatter,
        description="Start a demo OAuth provider and a demo control plane on loopback, a real "
        "oauth-bridge daemon in a temporary directory, and run one login through all three.",
        epilog="examples:\n  oauth-bridge demo\n  oauth-bridge demo --browser",
    )
    demo.add_argument(
        "--browser",
        action="store_true",
        help="open your real browser at the demo provider instead of following "
        "the redirects headless",
    )

    install = commands.add_parser(
        "install-service",
        help="install the systemd user units",
        formatter_class=_Formatter,
        epilog="examples:\n  oauth-bridge install-service --socket --dry-run\n"
        "  oauth-bridge install-service --socket --enable",
    )
    from bridge.service.install import add_arguments

    add_arguments(install)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except BridgeError as exc:
        if args.verbose:
            raise
        print(f"oauth-bridge: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def dispatch(args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "serve":
        return serve(args)
    if command == "expect":
        from bridge.client.expect import run_expect

        return run_expect(args)
    if command in ("status", "cancel", "complete"):
        from bridge.client import commands as tool_commands

        return int(getattr(tool_commands, command)(args))
    if command == "demo":
        from bridge.demo.run import run_demo

        return run_demo(args)
    if command == "install-service":
        from bridge.service.install import run

        return int(run(args))
    return EXIT_USAGE  # pragma: no cover  # argparse refuses unknown commands


def serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge.daemon.config import load_config
    from bridge.daemon.lifecycle import run_serve
    from bridge.daemon.logs import configure
    from bridge.paths import default_paths

    paths = default_paths()
    explicit = args.config is not None or bool(os.environ.get("OAUTH_BRIDGE_CONFIG"))
    config_file = Path(args.config) if args.config else paths.config_file
    flags = {
        "host": args.host,
        "port": args.port,
        "control_plane_url": args.control_plane_url,
        "log_level": args.log_level,
        "idle_exit_seconds": args.idle_exit_seconds,
    }
    config = load_config(config_file=config_file, explicit_file=explicit, flags=flags)
    configure(config.settings.log_level, config.credentials.secrets())
    return run_serve(config, paths)
