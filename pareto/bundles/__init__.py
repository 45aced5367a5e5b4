"""Bundles: a SubNet exported as a self-contained, verifiable folder (config, weights, ONNX, metrics).

The public names are served by :mod:`pareto`.
"""
