"""``oauth-bridge install-service``: the systemd user units (their files live in ``systemd/``)."""
