"""Time to browser: from running ``oauth-bridge login`` until the browser command is handed the address.

What a person waits before the sign-in page can show, against the same wait with the
library peers offer in-process: google-auth-oauthlib's ``run_local_server`` in a new
interpreter, from its start until ``webbrowser.open`` hands its browser the address.
Both hand it to the same recording ``$BROWSER``, which notes the time and exits. Warm:
a daemon runs already; cold: ``login`` starts one first (an empty state dir).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.budget import Budget
from bench.figure import Figure
from bench.flow import control_plane_double
from bench.processes import REPO, running_daemon, sandbox
from bench.report import Row
from bench.stats import median, ms
from tests.control_plane_double import API_KEY, BEARER, WORKSPACE_ID

WARM = "time to browser, daemon running"
COLD = "time to browser, daemon auto-started"
WARM_TARGET = "<= 0.5x google-auth-oauthlib"
COLD_TARGET = "<= 1.25x google-auth-oauthlib"
WARM_RATIO = 0.5
COLD_RATIO = 1.25

# The browser: note when it was handed an address (wall clock, across processes).
RECORDER = "import sys, time; open(sys.argv[2], 'w').write(str(time.time_ns()))"
PEER = """
from google_auth_oauthlib.flow import InstalledAppFlow
config = {"installed": {"client_id": "bench", "client_secret": "bench",
    "auth_uri": "https://provider.invalid/authorize", "token_uri": "https://provider.invalid/token"}}
InstalledAppFlow.from_client_config(config, ["openid"]).run_local_server(
    port=0, open_browser=True, timeout_seconds=30)
"""


def handed_after(argv: list[str], env: dict[str, str], mark: Path) -> float:
    """Run ``argv`` until its browser is handed an address; return how long that took."""
    mark.unlink(missing_ok=True)
    started = time.time_ns()
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not mark.exists() or not mark.read_text():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{argv[-1]!r}: no browser was handed an address")
            time.sleep(0.001)  # a poll of the mark, bounded by the deadline
        return (int(mark.read_text()) - started) / 1e9
    finally:
        process.kill()
        process.wait(10)


def browser_env(env: dict[str, str], mark: Path) -> dict[str, str]:
    return {**env, "DISPLAY": ":99", "BROWSER": f'{sys.executable} -c "{RECORDER}" %s {mark}'}


def login_argv() -> list[str]:
    return [
        sys.executable,
        "-m",
        "bridge",
        "login",
        "--provider",
        "github",
        "--scope",
        "repo",
        "--callback",
        "loopback",
    ]


def run(budget: Budget) -> list[Row]:
    runs = 3 if budget.quick else 7
    credentials = {
        "LANGSMITH_API_KEY": API_KEY,
        "LANGSMITH_WORKSPACE_ID": WORKSPACE_ID,
        "OAUTH_BRIDGE_BEARER_TOKEN": BEARER,
    }
    warm: list[float] = []
    cold: list[float] = []
    peer: list[float] = []
    with control_plane_double() as double_url, sandbox() as scratch:
        mark = scratch.root / "handed"
        settings = {**credentials, "OAUTH_BRIDGE_CONTROL_PLANE_URL": double_url}
        with running_daemon(settings) as (_, box):
            env = browser_env(box.environ(settings), mark)
            handed_after(login_argv(), env, mark)  # warm-up: bytecode, caches
            handed_after([sys.executable, "-c", PEER], env, mark)
            for _ in range(runs):  # interleaved, so noise hits all sides alike
                warm.append(handed_after(login_argv(), env, mark))
                peer.append(handed_after([sys.executable, "-c", PEER], env, mark))
        for _ in range(runs):
            with sandbox() as fresh:
                env = browser_env(fresh.environ({**settings, "OAUTH_BRIDGE_PORT": "0"}), mark)
                cold.append(handed_after(login_argv(), env, mark))
                stop = [sys.executable, "-m", "bridge", "stop", "--force"]
                subprocess.run(stop, env=env, cwd=REPO, capture_output=True, check=False)
    floor = median(peer)
    rows = []
    for name, target, times, limit in (
        (WARM, WARM_TARGET, warm, WARM_RATIO),
        (COLD, COLD_TARGET, cold, COLD_RATIO),
    ):
        ratio = median(times) / floor
        rows.append(
            Row(
                name,
                f"{ms(median(times))} ({ratio:.2f}x)",
                f"google-auth-oauthlib {ms(floor)}",
                target,
                ratio <= limit,
            )
        )
    return rows


FIGURE = Figure(
    key="time-to-browser",
    title="Time to browser",
    rows=((WARM, WARM_TARGET), (COLD, COLD_TARGET)),
    how="From spawning `oauth-bridge login --callback loopback` until its `$BROWSER` is "
    "handed the trampoline's address, with a daemon running (warm) and with `login` "
    "starting one in an empty sandbox (cold), against google-auth-oauthlib's "
    "`run_local_server` in a new interpreter from its start until `webbrowser.open` "
    "hands the same recording `$BROWSER` its address, interleaved with the warm runs; "
    "medians. The control-plane double runs in its own process.",
    run=run,
)
