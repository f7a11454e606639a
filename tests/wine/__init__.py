"""A Windows CPython under Wine (tests/wine/setup.sh builds it): probes, and the helpers
a Windows test tier would start it with (winepy.py). See README.md in this directory."""
