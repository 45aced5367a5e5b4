"""The demo spaces: small variants of the built-in spaces sized for data present on every machine.

``mbv3-digits`` classifies scikit-learn's 8×8 handwritten digits (upsampled to 24-32 px), ``gpt-stdlib`` models the
Python standard library's source byte by byte. Both keep their layer universes to a few hundred LayerSpecs so that
profiling them on a CPU takes minutes; their trained SuperNets and accuracy tables live in ``data/demo/``. The demo's
transformer is no built-in: ``llama-stdlib`` is a Llama SuperNet shipped as a Hugging Face folder
(``data/demo/llama-stdlib/``) that ``hwpareto demo`` registers through ``space from-hf`` (``pareto._demo``).
"""

from __future__ import annotations

from supernet.gpt import GPTSpace
from supernet.mbv3 import MobileNetV3Space

__all__ = ["gpt_stdlib", "mbv3_digits"]


def mbv3_digits() -> MobileNetV3Space:
    """OFA MobileNetV3 at about a fifth of the width, 10 classes, depth {1,2,3}/stage, kernel {3,5}, expand {2,3,4},
    resolution {24,28,32}, width {0.5,1.0}: 396 distinct layers."""
    return MobileNetV3Space(
        name="mbv3-digits",
        n_classes=10,
        base_widths=(16, 16, 24, 32, 48, 64, 96, 256, 384),
        width_choices=(0.5, 1.0),
        ks_choices=(3, 5),
        expand_choices=(2, 3, 4),
        depth_choices=(1, 2, 3),
        resolution_choices=(24, 28, 32),
        description="Demo: reduced-width MobileNetV3 for scikit-learn's 8x8 digits (upsampled to 24-32 px); "
        "depth {1,2,3}/stage, kernel {3,5}, expand {2,3,4}, width 0.5/1.0",
    )


def gpt_stdlib() -> GPTSpace:
    """A 4-layer byte-level GPT: width {64,96,128}, heads {1,2,4} of 16 dims, FFN {128,256,512}, context {64,128}:
    104 distinct layers."""
    space = GPTSpace(
        name="gpt-stdlib",
        n_layers=4,
        embed_choices=(64, 96, 128),
        head_choices=(1, 2, 4),
        head_dim=16,
        ffn_choices=(128, 256, 512),
        seq_choices=(64, 128),
    )
    space.description = (
        "Demo: 4-layer byte-level GPT for the Python standard library's source; width 64-128, "
        "heads 1-4, FFN 128-512, context 64/128"
    )
    return space
