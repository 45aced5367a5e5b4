"""hwpareto dashboard package."""
