"""Analysis: Pareto fronts, hypervolume, knee and operating points; stored studies read back and listed.

The public names are served by :mod:`pareto`.
"""
