"""Once-for-All MobileNetV3 search space and SuperNet, and OFA's own published SuperNets (``ofa-mbv3-w1.0/1.2``)."""

from supernet.mbv3._ofa import (
    OFAMobileNetV3Space,
    import_ofa_checkpoint,
    ofa_config,
    ofa_dict,
    ofa_form,
    ofa_mbv3_w10,
    ofa_mbv3_w12,
)
from supernet.mbv3._space import MobileNetV3Space, make_divisible

__all__ = [
    "MobileNetV3Space",
    "OFAMobileNetV3Space",
    "import_ofa_checkpoint",
    "make_divisible",
    "ofa_config",
    "ofa_dict",
    "ofa_form",
    "ofa_mbv3_w10",
    "ofa_mbv3_w12",
]
