"""An hwpareto plugin: the ``resnet-tiny`` search space, an elastic ResNet SuperNet for 32×32 images.

hwpareto finds it through the ``hwpareto.spaces`` entry point this package declares in its ``pyproject.toml``.
"""

from hwpareto_resnet_example._space import ResNetTinySpace

__all__ = ["ResNetTinySpace"]
