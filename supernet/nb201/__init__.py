"""The built-in ``nb201`` space: NAS-Bench-201 cells with a one-shot weight-shared SuperNet."""

from supernet.nb201._space import NB201Space

__all__ = ["NB201Space"]
