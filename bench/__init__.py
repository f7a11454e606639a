"""oauth-bridge's benchmark suite: ``python -m bench`` measures every figure and writes the table."""
