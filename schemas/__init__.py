"""cadence-engine packaged JSON Schema."""
