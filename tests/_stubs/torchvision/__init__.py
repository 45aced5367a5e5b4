"""Test-only STUB of torchvision: not torchvision, and never imported by hwpareto itself.

The ``ofa`` package (the oracle of tests/test_ofa_import.py) imports torchvision at module level for its data
transforms only; torchvision cannot be installed beside this project's torch. This stub provides just the names
those imports need at import time; calling any of them raises. Only the OFA tests put it on ``sys.path``.
"""

from torchvision import datasets, transforms

__all__ = ["datasets", "transforms"]
