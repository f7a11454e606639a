"""Logging: one line per event on stderr, and no secret on any path."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import BaseRequest, StreamResponse

# A backstop under the rule that code never logs a query string: if a library's error
# message carries one (a bad request line, say), the values of these names are cut.
QUERY_SECRET = re.compile(
    r"(?i)\b(code|state|iss|access_token|refresh_token|id_token|token|api_key|client_secret)"
    r"=[^&\s\"']*"
)


CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class RedactSecrets(logging.Filter):
    """Cut known secrets and query values out of every record before it is written."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # Format the traceback here, so the redaction covers it too.
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        clean = QUERY_SECRET.sub(lambda m: f"{m.group(1)}=[redacted]", message)
        for secret in self.secrets:
            clean = clean.replace(secret, "[redacted]")
        record.msg = clean
        record.args = None
        return True


class AccessLogger(AbstractAccessLogger):
    """Log method, path without its query, status and duration: never a code or a state.

    At debug level: the events that matter (a login registered, forwarded, ended) are
    logged at info where they happen, and a line per request would cost a flooded
    daemon a third of its throughput.
    """

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # The raw path, as sent: decoding it would let %0d%0a forge a log line and %00
        # write a NUL. Never the query.
        path = one_time_hidden(request.raw_path.split("?", 1)[0])
        self.logger.debug(
            "%s %s %d %.1fms",
            printable(request.method),
            printable(path),
            response.status,
            time * 1000,
        )


def printable(text: str) -> str:
    """Show control characters as escapes: one log line stays one line."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def client_fault(error: BaseException | None) -> HttpProcessingError | None:
    """Return the HTTP error a client's request caused, if ``error`` is or follows from one.

    aiohttp wraps a body it cannot decode (a Content-Encoding the body does not have) in
    a RequestPayloadError whose cause is the HttpProcessingError.
    """
    for _ in range(8):  # a chain is short; a cycle must not hang the log
        if error is None:
            return None
        if isinstance(error, HttpProcessingError):
            return error
        error = error.__cause__ or error.__context__
    return None


class BadRequestLines:
    """Say that the port refused requests it cannot read: one debug line a second at most.

    Each such request is a client's fault, not ours: a traceback per request (about 40
    lines for a bad Content-Encoding) let a web page of <img> tags fill a log at 1 MB a
    second.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.last = -1.0
        self.dropped = 0

    def refused(self, error: BaseException | None) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            self.dropped += 1
            return
        self.logger.debug(*self.line(error))
        self.last, self.dropped = now, 0

    def line(self, error: BaseException | None) -> tuple[str, str, int, str]:
        fault = client_fault(error)
        return (
            "refused a request that is not HTTP it can read (%s, %d)%s",
            type(fault or error).__name__,
            fault.code if fault is not None else 400,
            f"; {self.dropped} more since the last such line" if self.dropped else "",
        )


# Paths whose last segment is a one-time token: a trampoline, doctor's self-test.
ONE_TIME_PATHS = ("/go/", "/self-test/", "/v1/checks/browser/")


def one_time_hidden(path: str) -> str:
    """Return ``path`` with a one-time token in it replaced by '...'."""
    for prefix in ONE_TIME_PATHS:
        if path.startswith(prefix):
            return prefix + "..."
    return path


class QuietBadRequests(logging.Filter):
    """Log a request aiohttp cannot parse as one debug line, at most one a second.

    The TCP port's own protocol (lifecycle.BrowserProtocol) logs these through
    BadRequestLines already; this filter is the backstop for any other aiohttp path.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lines = BadRequestLines(logging.getLogger("aiohttp.server"))

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if client_fault(error) is None:
            return True
        lines = self.lines
        now = time.monotonic()
        if now - lines.last < 1.0:
            lines.dropped += 1
            return False
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.msg, *rest = lines.line(error)
        record.args = tuple(rest)
        record.exc_info = record.exc_text = None
        lines.last, lines.dropped = now, 0
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def configure(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.server").addFilter(QuietBadRequests())


def log_location() -> str:
    """Say where this daemon's log lines go, for ``status``: the journal, a file, or a terminal."""
    if os.environ.get("JOURNAL_STREAM"):
        return "the journal: journalctl --user -u oauth-bridge"
    try:
        target = os.readlink("/proc/self/fd/2")
    except OSError:
        return "stderr"
    if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
        return target
    return "stderr"
