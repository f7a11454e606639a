"""``oauth-bridge demo``: a whole login against a demo provider and a demo control plane."""
