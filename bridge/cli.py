"""The ``oauth-bridge`` command: parse, then hand over to the module that does the work.

Only the command that runs gets its options built and its module imported: a tool's
``status --json`` pays for argparse and the standard library's socket, nothing more.
The tools' commands never import aiohttp or pydantic (a test holds that line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from bridge import __version__
from bridge.errors import BridgeError, ExitCode

EPILOG_EXIT_CODES = """\
exit codes:
  0   succeeded (or registered, without --wait)
  2   bad usage or bad configuration
  3   no daemon available (not running, could not start, port taken)
  10  the login failed        11  the provider denied access
  12  expired or timed out    13  cancelled (Ctrl-C)
"""
LOGIN_EXIT_CODES = """\
exit codes:
  0   connected (or already connected)
  2   bad usage or bad configuration
  3   no daemon available (not running, could not start, port taken)
  10  the login failed, or LangSmith refused to start it
  11  the provider denied access
  12  expired or timed out    13  cancelled (Ctrl-C)
"""
# Commands whose Ctrl-C cancels a login: the contract's 13 whenever it comes.
CANCELLING = ("login", "expect", "complete")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _serve_arguments(serve: argparse.ArgumentParser) -> None:
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
    serve.add_argument("--log-level", type=str.lower, choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--idle-exit",
        type=float,
        metavar="SECONDS",
        dest="idle_exit_seconds",
        help="exit after this long with no login under way and no connection (systemd's "
        "sockets, or the next tool command, start it again; a daemon started by a tool "
        "exits after 600 s)",
    )


def _registration_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options every command that registers a login has (expect, login)."""
    parser.add_argument(
        "--ttl",
        type=int,
        metavar="S",
        default=600,
        help="seconds the login stays pending (default 600, at most 3600)",
    )
    parser.add_argument(
        "--client-name",
        metavar="NAME",
        help="how the browser's result page names your tool ('return to NAME')",
    )
    parser.add_argument(
        "--no-start",
        action="store_true",
        help="do not start a daemon when none runs (exit 3 instead)",
    )


def _expect_arguments(expect: argparse.ArgumentParser) -> None:
    expect.add_argument(
        "--provider",
        required=True,
        metavar="ID",
        help="provider id, as in /v2/auth/callback/{provider_id}",
    )
    which = expect.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--auth-url",
        metavar="URL|-",
        help="the authorization URL: its state is taken, its redirect_uri checked; '-' reads "
        "it from standard input (do that: a command line is readable by every local user)",
    )
    which.add_argument(
        "--state",
        metavar="S|-",
        help="the state the control plane made; '-' reads it from standard input",
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
    _registration_arguments(expect)


def _status_arguments(status: argparse.ArgumentParser) -> None:
    status.add_argument("--json", action="store_true", help="print the status as JSON")


def _cancel_arguments(cancel: argparse.ArgumentParser) -> None:
    cancel.add_argument("id", help="the login id that expect printed")


def _complete_arguments(complete: argparse.ArgumentParser) -> None:
    complete.add_argument(
        "url",
        nargs="?",
        default="-",
        help="the full callback address; '-' (the default) reads it from standard input, "
        "prompting on a terminal, so that the code never shows in a process list",
    )
    complete.add_argument("--json", action="store_true", help="print the login object as JSON")


def _login_arguments(login: argparse.ArgumentParser) -> None:
    login.add_argument(
        "--provider", required=True, metavar="ID", help="provider id, as the control plane names it"
    )
    login.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="S",
        help="an OAuth scope to ask for; repeat it for more",
    )
    login.add_argument("--user-id", metavar="U", help="scope the token to this user")
    login.add_argument("--agent-id", metavar="A", help="the agent the token is for")
    login.add_argument(
        "--force-new",
        action="store_true",
        help="start a new authorization even when already connected",
    )
    login.add_argument(
        "--callback",
        choices=["auto", "loopback", "hosted"],
        default=None,
        help="where the browser comes back: this daemon (loopback), LangSmith's own page "
        "(hosted: a browser on any machine), or auto (the default, env "
        "OAUTH_BRIDGE_CALLBACK): decided by where this runs, as 'doctor' shows",
    )
    login.add_argument(
        "--reach-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="with --callback auto choosing loopback: how long the browser has to reach the "
        "daemon before the login switches to LangSmith's own page (default 20)",
    )
    login.add_argument(
        "--no-open", action="store_true", help="print the sign-in address, do not open it"
    )
    login.add_argument(
        "--timeout", type=float, metavar="S", help="give up waiting after S seconds (exit 12)"
    )
    login.add_argument(
        "--json",
        action="store_true",
        help="print the final login object (with result.token) on stdout, and nothing else there",
    )
    _registration_arguments(login)


def _providers_arguments(providers: argparse.ArgumentParser) -> None:
    actions = providers.add_subparsers(dest="action", metavar="ACTION", required=True)
    allow = actions.add_parser(
        "allow-loopback",
        help="add this daemon's callback to the provider's allowed redirect URIs",
        description="Add this daemon's callback for provider ID to the provider's "
        "allowed_redirect_uris on the LangSmith control plane, keeping the URIs it had. "
        "The daemon makes the call, with its credentials. Running it twice changes nothing.",
        epilog="example:\n  oauth-bridge providers allow-loopback github --dry-run\n\n"
        "exit codes: 0 done (or nothing to do), 10 the control plane refused, 3 no daemon",
        formatter_class=_Formatter,
    )
    allow.add_argument("provider", metavar="ID", help="the provider id on the control plane")
    allow.add_argument(
        "--dry-run", action="store_true", help="say what would change, change nothing"
    )
    allow.add_argument("--json", action="store_true", help="print the result as JSON")


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="stop now, even with logins pending (they stay for the next daemon)",
    )


def _connections_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the connections as JSON")


def _disconnect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("provider", metavar="PROVIDER", help="the provider id to disconnect")


def _doctor_arguments(doctor: argparse.ArgumentParser) -> None:
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument(
        "--browser",
        action="store_true",
        help="also open a one-time address in the browser and check that it reaches the daemon",
    )
    doctor.add_argument(
        "--browser-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="with --browser: how long to wait for the browser (default 60)",
    )
    doctor.add_argument(
        "--no-start",
        action="store_true",
        help="do not start a daemon when none runs (the daemon check fails instead)",
    )


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument(
        "--browser",
        action="store_true",
        help="open your real browser at the demo provider instead of following "
        "the redirects headless",
    )


def _install_service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        action="store_true",
        help="let the service manager hold the sockets (systemd's socket units, launchd's "
        "Sockets) and start the daemon on the first connection",
    )
    parser.add_argument(
        "--sandbox",
        action="store_true",
        help="also install systemd's namespace sandbox drop-in (Linux; needs unprivileged "
        "user namespaces)",
    )
    parser.add_argument(
        "--enable",
        action="store_true",
        help="run the systemctl or launchctl commands instead of printing them",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="write nothing; print each unit file or the plist to stdout",
    )
    parser.add_argument(
        "--uninstall",
        action="store_true",
        help="remove what this command installed (unit files, the plist, the Run key)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite or remove unit files or the plist even when they were edited",
    )


class Command:
    """One subcommand: its help texts, how to add its options, and what runs it."""

    def __init__(
        self,
        *,
        help: str,
        add_arguments: Callable[[argparse.ArgumentParser], None],
        description: str | None = None,
        epilog: str = "",
    ) -> None:
        self.help = help
        self.add_arguments = add_arguments
        self.description = description
        self.epilog = epilog


COMMANDS: dict[str, Command] = {
    "serve": Command(
        help="run the daemon in the foreground",
        add_arguments=_serve_arguments,
        description="Run the daemon: callbacks on 127.0.0.1 and ::1, the control API on "
        "control.sock in the runtime dir. Settings: --flags > environment > config file.",
        epilog="example:\n  LANGSMITH_API_KEY=... oauth-bridge serve --port 0 --log-level debug\n\n"
        "exit codes: 0 stopped cleanly, 2 bad configuration or an unusable runtime or state "
        "dir, 3 another daemon runs or the port is taken",
    ),
    "expect": Command(
        help="register a login and (optionally) wait for its outcome",
        add_arguments=_expect_arguments,
        description="Tell the daemon to expect a provider's redirect for one state, starting "
        "the daemon in the background if none runs (its log goes to daemon.log in the state "
        "dir). Without --wait it prints the login id on stdout (the login object with --json) "
        "and returns; with --wait it blocks until the login ends, and Ctrl-C cancels it.",
        epilog="examples:\n"
        "  printf '%s\\n' \"$AUTH_URL\" | oauth-bridge expect --provider github --auth-url - --open --wait --json\n"
        "  printf '%s\\n' \"$STATE\" | oauth-bridge expect --provider google --state - --wait --timeout 120\n\n"
        + EPILOG_EXIT_CODES,
    ),
    "login": Command(
        help="connect a provider in one command: the daemon starts the flow with LangSmith",
        add_arguments=_login_arguments,
        description="Have the daemon start a LangSmith Agent Auth login for a provider (as "
        "the LangSmith user of this environment's LANGSMITH_API_KEY, else the daemon's "
        "own), print the sign-in address and open it, and wait until the login ends, like "
        "'expect --wait'. Already connected: it exits 0 at once. The token is printed only "
        "inside --json's login object.",
        epilog="examples:\n"
        "  oauth-bridge login --provider github --scope repo\n"
        "  token=$(oauth-bridge login --provider google --scope openid --scope email --json "
        "| jq -r .result.token)\n\n" + LOGIN_EXIT_CODES,
    ),
    "status": Command(
        help="show whether a daemon runs, and its recent logins",
        add_arguments=_status_arguments,
        epilog="example:\n  oauth-bridge status --json\n\nexit codes: 0 running, 3 not running",
    ),
    "stop": Command(
        help="stop the running daemon (pending logins end first, unless --force)",
        add_arguments=_stop_arguments,
        description="Stop the running daemon as SIGTERM does: it stops accepting, lets "
        "forwards under way finish, and exits. With logins pending it first waits for them "
        "to end: a stopped daemon leaves its port to whoever takes it, another user "
        "included. With --force it stops at once; pending logins stay in the store for the "
        "next daemon.",
        epilog="example:\n  oauth-bridge stop\n\nexit codes: 0 stopped, 3 none was running",
    ),
    "cancel": Command(
        help="cancel a pending login",
        add_arguments=_cancel_arguments,
        epilog="example:\n  oauth-bridge cancel Zx3k9QmP2aLr7Tb1\n\n"
        "exit codes: 0 cancelled, 2 no such login, 3 no daemon, 10 the login had already ended",
    ),
    "complete": Command(
        help="finish a login from the address the browser ended on (paste fallback)",
        add_arguments=_complete_arguments,
        description="When the browser runs on another machine, its redirect to 127.0.0.1 "
        "fails there. Copy the address it ended on and give it here: the daemon processes it "
        "exactly as if the browser had delivered it.",
        epilog="example:\n  oauth-bridge complete        (then paste the address and press Enter)"
        "\n\nexit codes: 0 succeeded, 10 failed or no login waits for that state, 11 denied, "
        "12 expired, 13 cancelled, 2 not a callback address of this daemon, 3 no daemon",
    ),
    "connections": Command(
        help="show each provider and whether your LangSmith user is connected to it",
        add_arguments=_connections_arguments,
        description="List the providers of the LangSmith control plane and whether your "
        "LangSmith user (your environment's LANGSMITH_API_KEY, else the daemon's) has a "
        "token for each.",
        epilog="example:\n  oauth-bridge connections --json\n\n"
        "exit codes: 0 listed, 10 the control plane refused, 3 no daemon",
    ),
    "disconnect": Command(
        help="revoke your LangSmith user's tokens for a provider",
        add_arguments=_disconnect_arguments,
        description="Delete every token your LangSmith user (your environment's "
        "LANGSMITH_API_KEY, else the daemon's) holds for PROVIDER on the control plane.",
        epilog="example:\n  oauth-bridge disconnect github\n\n"
        "exit codes: 0 disconnected, 10 the control plane refused, 3 no daemon",
    ),
    "doctor": Command(
        help="check what a login needs here, and say what to do about each problem",
        add_arguments=_doctor_arguments,
        description="Check the runtime and state dirs, the daemon (starting one if none "
        "runs), its credentials, LangSmith reached and accepting them (a read of the "
        "providers, never a login), each provider allowing this daemon's callback, "
        "optionally a browser reaching the daemon, and the environment (SSH, WSL, dev "
        "containers, Codespaces) with what makes a login work there.",
        epilog="examples:\n  oauth-bridge doctor\n  oauth-bridge doctor --browser --json\n\n"
        "exit codes: 0 every check passed, 1 a problem was found",
    ),
    "providers": Command(
        help="manage providers on the control plane (allow-loopback)",
        add_arguments=_providers_arguments,
        epilog="example:\n  oauth-bridge providers allow-loopback github",
    ),
    "demo": Command(
        help="run the whole flow locally against a demo provider and control plane",
        add_arguments=_demo_arguments,
        description="Start a demo OAuth provider and a demo control plane on loopback, a real "
        "oauth-bridge daemon in a temporary directory, and run one login through all three.",
        epilog="examples:\n  oauth-bridge demo\n  oauth-bridge demo --browser",
    ),
    "install-service": Command(
        help="start the daemon with your session: systemd user units, a LaunchAgent, or "
        "the Run key",
        add_arguments=_install_service_arguments,
        epilog="examples:\n  oauth-bridge install-service --socket --dry-run\n"
        "  oauth-bridge install-service --socket --enable",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser, with the options of ``command`` only (of every command for None)."""
    parser = argparse.ArgumentParser(
        prog="oauth-bridge",
        description="A local OAuth loopback bridge: it receives the provider's redirect on "
        "127.0.0.1 and forwards code and state, once, to the LangSmith Deployment control plane.",
        epilog="examples:\n"
        "  oauth-bridge demo                      see the whole flow work, locally\n"
        "  oauth-bridge expect --provider github --auth-url - --open --wait  < url.txt\n"
        "  oauth-bridge status\n\n" + EPILOG_EXIT_CODES,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"oauth-bridge {__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="show a traceback when something fails unexpectedly"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=spec.help,
            description=spec.description or spec.help[0].upper() + spec.help[1:] + ".",
            epilog=spec.epilog,
            formatter_class=_Formatter,
        )
        if command is None or command == name:
            spec.add_arguments(sub)
            # Also after the command: 'oauth-bridge expect ... --verbose' reads naturally.
            sub.add_argument(
                "--verbose",
                action="store_true",
                default=argparse.SUPPRESS,
                help="show a traceback when something fails unexpectedly",
            )
    return parser


def command_in(argv: Sequence[str]) -> str | None:
    """Return the subcommand named in ``argv``: the first word that is one."""
    for word in argv:
        if word in COMMANDS:
            return word
        if not word.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        import bridge.platform  # noqa: F401  # chooses the system's seams, or says it has none
    except BridgeError as exc:
        print(f"oauth-bridge: {exc.message}", file=sys.stderr)
        return ExitCode.USAGE
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_in(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return ExitCode.USAGE
    try:
        code = dispatch(args)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
        return code
    except BridgeError as exc:
        if args.verbose:
            raise
        from bridge.client.terminal import printable
        from bridge.errors import DaemonNotRunning

        message = exc.message
        if isinstance(exc, DaemonNotRunning):
            # The library's words name start=False; a command's name its own flag.
            message = exc.for_command_line(
                "--no-start" if getattr(args, "no_start", False) else None
            )
        # A message may carry the control plane's or a provider's words: escape them.
        print(f"oauth-bridge: {printable(message, lines=True)}", file=sys.stderr)
        if getattr(args, "json", False):
            # --json promises one JSON document on stdout, a failure included.
            print(json.dumps({**failure_document(exc), "message": message}), flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.CANCELLED if args.command in CANCELLING else ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`status | head -1`): silence, as a program SIGPIPE ends.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


# What a shell reports for a program that SIGPIPE ended.
EXIT_BROKEN_PIPE = 128 + 13


def failure_document(exc: BridgeError) -> dict[str, object]:
    """Describe a failure for --json: the contract's {error, message, ...}."""
    from bridge.errors import ControlPlaneRefused, DaemonUnavailable, UsageError

    document: dict[str, object] = {"message": exc.message}
    if isinstance(exc, ControlPlaneRefused):
        document["error"] = exc.error
        if exc.control_plane_status is not None:
            document["control_plane_status"] = exc.control_plane_status
    elif isinstance(exc, DaemonUnavailable):
        document["error"] = "daemon_unavailable"
    elif isinstance(exc, UsageError):
        document["error"] = "usage"
    else:
        document["error"] = "failed"
    return {"error": document.pop("error"), **document}


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command, importing its module only now."""
    command: str = args.command
    if command == "serve":
        return serve(args)
    if command == "expect":
        from bridge.client.expect import run_expect

        return run_expect(args)
    if command == "doctor":
        from bridge.client.doctor import run_doctor

        return run_doctor(args)
    if command == "login":
        if not args.no_start:
            start_daemon_early(args)
        from bridge.client.login_command import run_login

        return run_login(args)
    if command in (
        "status",
        "stop",
        "cancel",
        "complete",
        "providers",
        "connections",
        "disconnect",
    ):
        from bridge.client import commands

        return int(getattr(commands, command)(args))
    if command == "demo":
        from bridge.demo.run import run_demo

        return run_demo(args)
    if command == "install-service":
        import importlib

        from bridge.platform import SERVICE_MODULE  # systemd's units, launchd's, the Run key

        return int(importlib.import_module(SERVICE_MODULE).run(args))
    return ExitCode.USAGE  # pragma: no cover  # argparse refuses unknown commands


def start_daemon_early(args: argparse.Namespace) -> None:
    """Start a daemon, if one must be, before the command imports the rest of itself.

    A cold ``login`` waits for the daemon's start, most of it imports: begun now, they run
    on the other core while the command's own run here (autostart.start_early).
    """
    from bridge.client.autostart import start_early
    from bridge.client.wait_arguments import check_wait_arguments
    from bridge.paths import default_paths

    check_wait_arguments(args)  # a command refused for its arguments starts nothing
    try:
        paths = default_paths()
    except BridgeError:
        return  # said in its turn, by the command, as without an early start
    start_early(paths)


def serve(args: argparse.Namespace) -> int:
    import gc
    from pathlib import Path

    from bridge.daemon.certificates import deferred_ca_loading

    # The daemon's imports (most of its start) make some 80,000 objects the collector
    # tracks, and leave about 2,000 of them garbage: its 120 passes over them took some
    # 20 ms here. Frozen once made, they are left out of every later collection too.
    gc.disable()
    # No pydantic plugin in the daemon: one installed beside it (an observability SDK's)
    # would be handed every value the models validate (codes, states, tokens), and
    # finding plugins scans every installed distribution's metadata at start.
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    with deferred_ca_loading():  # see bridge.daemon.certificates: read at first use
        from bridge.daemon.config import load_config
        from bridge.daemon.lifecycle import run_serve
        from bridge.daemon.logs import configure
    from bridge.paths import default_paths

    gc.freeze()
    gc.enable()

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
    try:
        config = load_config(config_file=config_file, explicit_file=explicit, flags=flags)
    except BridgeError as exc:
        from bridge.daemon.lifecycle import refuse

        return refuse(exc)  # one line of the daemon's log, as every refused start
    configure(config.settings.log_level, config.credentials.secrets())
    return run_serve(config, paths)
