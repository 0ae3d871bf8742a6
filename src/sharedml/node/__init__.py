"""The data provider's node: dataset registry (and, elsewhere, the agent)."""
