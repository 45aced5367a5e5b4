"""What an image SubNet expects as input, and how its batch-norm statistics are recalibrated.

Every image space declares one :class:`ImagePreprocessing` (``SearchSpace.preprocessing``): the datasets resize
and normalise images with it, BN recalibration follows its recipe, and exported bundles record it so that a user
can feed the ONNX file correctly. Two exist:

* :data:`HWPARETO_IMAGES`: hwpareto's own SuperNets: centre square crop, resize, pixels scaled to [-1, 1]; BN
  statistics from one batch of 500 training images under the dataset's affine distortions.
* :data:`OFA_IMAGENET`: Once-for-All's ImageNet networks: resize the shorter side to ``ceil(r / 0.875)``, centre
  crop ``r`` (OFA's validation transform), ImageNet mean/std; BN statistics as OFA's ``set_running_statistics``:
  2,000 training images in batches of 200 under OFA's training transform (random resized crop of scale 0.08-1 and
  aspect 3/4-4/3, horizontal flip, brightness ±32/255 and saturation ±50 % jitter), every batch's mean and biased
  variance averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["HWPARETO_IMAGES", "OFA_IMAGENET", "ImagePreprocessing"]


@dataclass(frozen=True, slots=True)
class ImagePreprocessing:
    """Input convention of an image SubNet (RGB, NCHW, float32) and its BN recalibration recipe.

    An image of any size becomes the SubNet's ``r`` × ``r`` input by resizing its shorter side to
    ``ceil(r / crop_fraction)`` px (bilinear), cropping the centre ``r`` × ``r``, scaling pixels to [0, 1] and
    normalising each channel: ``(x - mean) / std``.
    """

    name: str
    mean_rgb: tuple[float, float, float]
    std_rgb: tuple[float, float, float]
    crop_fraction: float
    calibration: Literal["affine", "ofa"]
    """``affine``: one batch of the dataset's training distortions; ``ofa``: OFA's transform and averaging."""
    calibration_images: int
    calibration_batch_images: int
    antialias: bool
    """Whether downscaling stored images to a SubNet's resolution smooths first (as PIL, which OFA's transforms use)."""

    def resize_px(self, resolution_px: int) -> int:
        """The shorter side an image is resized to before the centre crop of ``resolution_px``."""
        return math.ceil(resolution_px / self.crop_fraction) if self.crop_fraction < 1 else resolution_px

    def to_record(self, resolution_px: int) -> dict[str, Any]:
        """JSON-ready description for a bundle's ``config.json``."""
        return {
            "convention": self.name,
            "input_name": "input",
            "layout": "NCHW",
            "channels": "RGB",
            "dtype": "float32",
            "resize_shorter_side_px": self.resize_px(resolution_px),
            "interpolation": "bilinear",
            "center_crop_px": resolution_px,
            "pixel_scale": "1/255 (pixels in [0, 1] before normalisation)",
            "mean": list(self.mean_rgb),
            "std": list(self.std_rgb),
            "normalize": "(x - mean) / std per channel",
        }


HWPARETO_IMAGES = ImagePreprocessing(
    name="hwpareto",
    mean_rgb=(0.5, 0.5, 0.5),
    std_rgb=(0.5, 0.5, 0.5),
    crop_fraction=1.0,
    calibration="affine",
    calibration_images=500,
    calibration_batch_images=500,
    antialias=False,
)
OFA_IMAGENET = ImagePreprocessing(
    name="ofa-imagenet",
    mean_rgb=(0.485, 0.456, 0.406),
    std_rgb=(0.229, 0.224, 0.225),
    crop_fraction=0.875,
    calibration="ofa",
    calibration_images=2000,
    calibration_batch_images=200,
    antialias=True,
)
