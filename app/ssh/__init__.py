"""SSH to the target: connector, host key trust, connection plan, keys, the demo's server."""
