"""An hwpareto plugin: the ``resnet-tiny`` search space, an elastic ResNet SuperNet for 32×32 images, and one
plugin of every other extension point: ``_fpga`` (the ``toy-fpga`` backend of device kind ``fpga`` and its device
cost ``power_mw``), ``_strategy`` (the ``mutate`` search strategy), ``_blocks`` (the analytic objective
``blocks``).

hwpareto finds each through the entry point this package declares in its ``pyproject.toml`` (groups
``hwpareto.spaces``, ``hwpareto.backends``, ``hwpareto.metrics``, ``hwpareto.strategies``, ``hwpareto.objectives``)
and imports its module only when its name is first used.
"""

from hwpareto_resnet_example._space import ResNetTinySpace

__all__ = ["ResNetTinySpace"]
