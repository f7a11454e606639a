"""oauth-bridge: a local OAuth loopback bridge to the LangSmith Deployment control plane."""

__version__ = "0.1.0"
