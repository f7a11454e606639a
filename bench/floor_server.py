"""The floor: a bare aiohttp server that parses the callback's query and answers 303, nothing more.

``python -m bench.floor_server --ready-file PATH`` binds 127.0.0.1:0, writes
``{"pid": ..., "url": ...}`` to PATH (write then rename) once it accepts, and serves
until SIGTERM: the same readiness signal as the daemon's daemon.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from aiohttp import web

SINGLE_VALUED = ("code", "state", "iss", "error")


def see_other(location: str) -> web.Response:
    # Answered as the daemon answers (a plain 303, not a raised HTTPSeeOther), so the
    # floor is the cheapest way to do the same work.
    return web.Response(status=303, headers={"Location": location})


async def callback(request: web.Request) -> web.StreamResponse:
    """Do the query work the daemon does before it looks a state up, and refuse it the same way."""
    params = request.query
    if len(set(params)) != len(params):
        for name in SINGLE_VALUED:
            if len(params.getall(name, [])) > 1:
                return see_other(f"/result/-/invalid?why=duplicate-{name}")
        return see_other("/result/-/invalid?why=duplicate-parameter")
    if not params.get("state", "") or not (params.get("code", "") or params.get("error", "")):
        return see_other("/result/-/invalid?why=missing-state")
    return see_other("/result/-/unknown?why=no-login")


async def serve(ready_file: Path) -> None:
    app = web.Application()
    app.router.add_get("/callback/{provider_id}", callback, allow_head=False)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ready_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "url": f"http://127.0.0.1:{port}"}))
    tmp.replace(ready_file)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", type=Path, required=True)
    asyncio.run(serve(parser.parse_args().ready_file))


if __name__ == "__main__":
    main()
