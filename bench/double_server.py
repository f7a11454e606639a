"""The tests' control-plane double in a process of its own: ``python -m bench.double_server``.

It prints its URL on stdout once it accepts, then serves until SIGTERM. A process of its
own keeps its CPU out of the harness's measurements and the daemon's.
"""

from __future__ import annotations

import asyncio
import signal

from tests.control_plane_double import ControlPlaneDouble


async def serve() -> None:
    double = ControlPlaneDouble()
    double.allow_any_redirect = True  # whatever port a benchmark's daemon took
    await double.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(double.url, flush=True)
    await stop.wait()
    await double.stop()


if __name__ == "__main__":
    asyncio.run(serve())
