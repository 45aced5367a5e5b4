"""Once-for-All MobileNetV3 search space and SuperNet."""

from supernet.mbv3._space import MobileNetV3Space, make_divisible

__all__ = ["MobileNetV3Space", "make_divisible"]
