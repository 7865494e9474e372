"""pointsbot."""
