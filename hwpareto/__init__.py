"""hwpareto's own namespace: what every package shares (:mod:`hwpareto.errors`), the store below the profilers and
predictors (:mod:`hwpareto.store`) and the command line above everything (:mod:`hwpareto.cli`).

The user-named packages (``supernet``, ``profilers``, ``predictors``, ``pareto``, ``dashboard``) keep their import
names; docs/ARCHITECTURE.md gives the layers and the reasons.
"""
