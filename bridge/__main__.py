"""Run the oauth-bridge CLI: ``python -m bridge``."""

from bridge.cli import main

raise SystemExit(main())
