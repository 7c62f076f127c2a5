"""One module per system of the peer benchmark: how it is started and driven with its usual client."""
