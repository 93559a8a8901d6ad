"""Learning agents: labels joined with decision-time features, online training."""
