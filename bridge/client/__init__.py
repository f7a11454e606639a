"""What runs in a desktop tool's process: the standard library only, for a fast start.

The control socket's transport, finding or starting the daemon, and the CLI's tool
commands. Nothing here imports aiohttp, pydantic, yarl or multidict (a test holds it).
"""
