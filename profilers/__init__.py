"""hwpareto profilers package."""
