"""aiohttp's TLS context gets its CA certificates when TLS is first used, not at import.

A new interpreter each: this one imported aiohttp already, and deferred_ca_loading
leaves an aiohttp imported before it as aiohttp made it.
"""

from __future__ import annotations

import ssl
import subprocess
import sys

import aiohttp
import pytest

from bridge.daemon import certificates
from bridge.daemon.config import Credentials
from bridge.daemon.control_plane import ControlPlane
from tests.conftest import REPO

DEFERRED = """
import ssl
from bridge.daemon import certificates
with certificates.deferred_ca_loading():
    import aiohttp.connector as connector
verified, unverified = connector._SSL_CONTEXT_VERIFIED, connector._SSL_CONTEXT_UNVERIFIED
reference = ssl.create_default_context().cert_store_stats()
assert ssl.SSLContext.set_default_verify_paths is certificates._read_ca_paths
assert certificates.pending()
assert verified.cert_store_stats()["x509_ca"] == 0 or not reference["x509_ca"]
certificates.load_deferred()
assert not certificates.pending()
assert verified.cert_store_stats() == reference, (verified.cert_store_stats(), reference)
assert verified.verify_mode == ssl.CERT_REQUIRED and verified.check_hostname
assert unverified.verify_mode == ssl.CERT_NONE
print("ok")
"""

ALREADY_IMPORTED = """
import aiohttp.connector
from bridge.daemon import certificates
with certificates.deferred_ca_loading():
    import ssl
    context = ssl.create_default_context()
assert not certificates.pending()
assert context.cert_store_stats() == ssl.create_default_context().cert_store_stats()
print("ok")
"""


@pytest.mark.parametrize("code", [DEFERRED, ALREADY_IMPORTED], ids=["deferred", "already"])
def test_the_verifying_context_is_given_its_certificates_once_asked(code: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.stdout.strip() == "ok", result.stderr


def control_plane(base_url: str, proxy: str | None = None) -> ControlPlane:
    return ControlPlane(
        session=None,  # type: ignore[arg-type]  # never reached: see below
        base_url=base_url,
        credentials=Credentials(),
        deadline_seconds=1.0,
        proxy=proxy,
    )


@pytest.mark.parametrize(
    ("base_url", "proxy", "tls"),
    [
        ("https://api.example", None, True),
        ("http://127.0.0.1:9", None, False),
        ("http://10.0.0.1:9", "http://proxy.example:3128", False),
        ("http://10.0.0.1:9", "https://proxy.example:3128", True),
    ],
)
def test_only_a_call_that_may_use_tls_waits_for_the_certificates(
    base_url: str, proxy: str | None, tls: bool
) -> None:
    assert control_plane(base_url, proxy).may_use_tls is tls


async def test_the_first_tls_call_loads_what_was_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    waiting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loaded: list[ssl.SSLContext] = []
    monkeypatch.setattr(certificates, "_pending", [waiting])
    monkeypatch.setattr(certificates, "_read_ca_paths", loaded.append)
    plane = control_plane("https://api.example")

    class Sent(Exception):
        pass

    def request(*args: object, **kwargs: object) -> object:
        raise Sent  # the certificates are read before anything is sent

    session = type("S", (), {"request": staticmethod(request), "timeout": aiohttp.ClientTimeout(1)})
    monkeypatch.setattr(plane, "session", session())
    with pytest.raises(Sent):
        await plane.send("GET", plane.url("v2", "auth"))

    assert loaded == [waiting]
    assert not certificates.pending()
