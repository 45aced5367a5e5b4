"""hwpareto predictors package."""
