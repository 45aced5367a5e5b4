"""The vector-unit cost model the simulated backends share (ZigZag's NPUs and SRAM-CIM, the ReRAM model).

What runs beside the MAC engine (a systolic array, a CIM macro, crossbars), per :class:`~supernet.LayerSpec` at
``batch``, with ``n = batch·cin·h·w·seq`` input elements. Ops per element: add 1, pool ``kernel²`` per output, gap
1, batchnorm 2 + activation, layernorm 7, rmsnorm 4, rope 3 per rotated query/key element, swiglu 5 (silu and the
product with up), embedding 1 per looked-up value (each value passes a lane on its way to the activations), se
GAP and scale 1 each per input element plus ReLU 1 per hidden unit and hard-sigmoid 3 per channel, attention
softmax 5 per score (``batch·heads·seq·context``), and the post-ops of conv2d/linear: bias or folded BN 1 and
activation (relu 1, hswish 4, gelu 8) per output (per input when ``preact``).

Traffic (elements moved through the activation memory; the MAC engine's own traffic is its model's): add ``3n``
(two inputs read, one output written), pool and gap input + output, batchnorm/layernorm/rmsnorm ``2n``, rope the
rotated elements read and written, swiglu ``3n`` (gate and up read, output written), se ``3n`` (its input read for
the GAP and again for the scale, written once), embedding the looked-up values written plus as many *weights*
read from the table; conv2d/linear post-ops and attention's softmax none (fused with the MAC engine's output).
:func:`attention_operands` is what an attention whose matmuls run off the MAC engine reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from supernet import LayerSpec

__all__ = ["ACT_OPS", "SOFTMAX_OPS", "VectorWork", "attention_operands", "vector_work"]

ACT_OPS = {"none": 0, "relu": 1, "hswish": 4, "gelu": 8}  # vector-unit ops per activated element
BATCHNORM_OPS = 2  # scale and shift
LAYERNORM_OPS = 7  # mean add, subtract, square, variance add, normalise, scale, shift
SOFTMAX_OPS = 5  # max, subtract, exp, sum, scale (per attention score)
RMSNORM_OPS = 4  # square, mean add, normalise, scale
ROPE_OPS = 3  # x·cos, rotate_half(x)·sin, add (per rotated element)
SWIGLU_OPS = 5  # silu (negate-exp, add, divide, multiply) and the product with up
HSIGMOID_OPS = 3  # add, clamp, scale (se gate)


@dataclass(frozen=True, slots=True)
class VectorWork:
    """Vector-unit work of one layer: element ``ops``, activation elements moved, weight elements read."""

    ops: int
    act_elements: int = 0
    weight_elements: int = 0

    def nbytes(self, act_bytes: float, weight_bytes: float) -> float:
        """Bytes moved at ``act_bytes`` per activation and ``weight_bytes`` per weight element."""
        return self.act_elements * act_bytes + self.weight_elements * weight_bytes


def vector_work(spec: LayerSpec, batch: int) -> VectorWork:
    """The vector-unit part of ``spec`` at ``batch`` (formulas in the module docstring)."""
    n = spec.cin * spec.h * spec.w * spec.seq * batch
    op = spec.op
    if op == "conv2d":
        oh, ow = spec.out_hw
        out = spec.cout * oh * ow * batch
        return VectorWork(out * (1 if spec.bias or spec.bn else 0) + (n if spec.preact else out) * ACT_OPS[spec.act])
    if op == "linear":
        return VectorWork(spec.seq * spec.cout * batch * ((1 if spec.bias else 0) + ACT_OPS[spec.act]))
    if op == "se":
        return VectorWork(2 * n + batch * (spec.hidden * ACT_OPS["relu"] + spec.cin * HSIGMOID_OPS), 3 * n)
    if op == "attention":
        return VectorWork(SOFTMAX_OPS * batch * spec.heads * spec.seq * (spec.context or spec.seq))
    if op == "add":
        return VectorWork(n, 3 * n)
    if op == "pool":
        oh, ow = spec.out_hw
        out = spec.cin * oh * ow * batch
        return VectorWork(out * spec.kernel**2, n + out)
    if op == "gap":
        return VectorWork(n, n + spec.cin * batch)
    if op == "layernorm":
        return VectorWork(LAYERNORM_OPS * n, 2 * n)
    if op == "rmsnorm":
        return VectorWork(RMSNORM_OPS * n, 2 * n)
    if op == "rope":
        rotated = spec.seq * (spec.heads + (spec.kv_heads or spec.heads)) * spec.hidden * batch
        return VectorWork(ROPE_OPS * rotated, 2 * rotated)
    if op == "swiglu":
        return VectorWork(SWIGLU_OPS * n, 3 * n)
    if op == "embedding":
        looked_up = spec.seq * spec.cout * batch
        return VectorWork(looked_up, looked_up, looked_up)
    if op == "batchnorm":
        return VectorWork((BATCHNORM_OPS + ACT_OPS[spec.act]) * n, 2 * n)
    raise ValueError(f"no vector-unit model for op {op!r}")


def attention_operands(spec: LayerSpec, batch: int) -> int:
    """Activation elements an attention reads and writes when its matmuls run off the MAC engine: Q and the
    output (``heads·seq·hidden`` each), K and V (``kv_heads·context·hidden`` each, the cache)."""
    kv = spec.kv_heads or spec.heads
    return 2 * (spec.heads * spec.seq + kv * (spec.context or spec.seq)) * spec.hidden * batch
