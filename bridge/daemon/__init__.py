"""The daemon, ``oauth-bridge serve``: callbacks in from browsers, forwards out to the control plane.

Everything here runs in the daemon's process (aiohttp, pydantic, SQLite). A tool's
process never imports this package: see ``bridge.client``.
"""
