"""The checks of a waiting command's arguments, light enough to run before it imports the rest."""

from __future__ import annotations

import argparse

from bridge.errors import UsageError


def check_wait_arguments(args: argparse.Namespace) -> None:
    """Refuse a TTL or a timeout the daemon would refuse, in the CLI's own words."""
    if not 1 <= args.ttl <= 3600:
        raise UsageError(f"--ttl must be between 1 and 3600 seconds, not {args.ttl}")
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"--timeout must be 0 or more seconds, not {args.timeout:g}")
