"""Search: the specification and its runs (surrogate, budgeted), strategies, workers and the queue.

The public names are served by :mod:`pareto`.
"""
