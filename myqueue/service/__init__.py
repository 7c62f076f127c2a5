"""What every HTTP service shares: the envelope, error mapping, health, metrics and serving."""
