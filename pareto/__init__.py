"""hwpareto pareto package."""
