"""Run the control-plane double inside the guest, as the test user, with the guest venv.

    PYTHONPATH=/src python -m tests.systemd_container.double PORT [REDIRECT_URI ...]

The private network keeps the host's ports out of it: the daemon under test reaches
this double on the guest's own 127.0.0.1. Each REDIRECT_URI is allowed for github, and
GET /test/auth-requests lists the auth requests the daemon started (with their state),
which is what a provider would have put in the browser's redirect.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from tests.control_plane_double import ControlPlaneDouble


class GuestDouble(ControlPlaneDouble):
    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/test/auth-requests", self.list_auth_requests)
        return app

    async def list_auth_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "auth_id": auth.auth_id,
                    "provider_id": auth.provider_id,
                    "state": auth.state,
                    "redirect_uri": auth.redirect_uri,
                    "status": auth.status,
                }
                for auth in self.auth_requests.values()
            ]
        )


async def main(port: int, redirect_uris: list[str]) -> None:
    # The daemon in the guest sends the API key and workspace of its config file.
    double = GuestDouble(bearer=None)
    for uri in redirect_uris:
        double.allow("github", uri)
    await double.start_on(port)
    print(f"control-plane double on {double.url}", flush=True)
    await asyncio.Event().wait()  # until systemd stops the unit


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
