"""Choices as enums, and the quantizer's settings read from the target profile's INT8 format
(:class:`trm_edge.targets.profile.Int8Format`; never ``if target == ...``)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from trm_edge.errors import QuantizationError, choices
from trm_edge.targets.profile import Int8Format, Target


class Precision(str, Enum):
    INT8 = "int8"
    FP16 = "fp16"


class Backend(str, Enum):
    ORT = "ort"  # onnxruntime.quantization
    NNCF = "nncf"  # the ``nncf`` extra


class Method(str, Enum):
    """How activation ranges are chosen from the calibration states."""

    MINMAX = "minmax"  # the full observed range: nothing met at any depth is clipped
    ENTROPY = "entropy"  # KL-divergence threshold on histograms (onnxruntime only)
    PERCENTILE = "percentile"  # 99.999th percentile of |x| on histograms


def parse_enum(kind: type[Enum], value: str | Enum, what: str) -> Any:
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value).lower())
    except ValueError:
        raise QuantizationError(f"{what} {value!r} is not one of {choices(m.value for m in kind)}") from None


def int8_format(target: Target) -> Int8Format:
    """The target's INT8 format (its ``int8:`` section in targets/*.yaml), which the quantizer follows;
    QuantizationError for a target that cannot run int8."""
    if target.int8 is None or "int8" not in target.precisions:
        raise QuantizationError(
            f"target {target.name!r} cannot run int8 (its precisions: {choices(target.precisions)}); "
            "export for a target that lists int8 (trm-edge targets)")
    return target.int8


def default_method(fmt: Int8Format) -> Method:
    """Activation ranges when ``--method`` is not given. Symmetric activations (TensorRT) spend half their
    codes on a sign that one-sided outliers stretch: percentile ranges kept the default model's Jetson
    bundle within 0.0-0.4 points of fp32 on two 1,000-puzzle sets (minmax: -1.7 and +0.5) with 90% answer
    agreement. For u8 activations minmax and percentile were within noise of each other (pooled over 2,500
    puzzles: -0.2 and -0.6 points), and minmax clips nothing met at any depth."""
    return Method.PERCENTILE if fmt.symmetric_activations else Method.MINMAX


# -- onnxruntime.quantization arguments ----------------------------------------------------------------
def ort_arguments(fmt: Int8Format, *, attention: bool = False) -> dict[str, Any]:
    """onnxruntime's quantize_static arguments; ``attention`` lets it quantize activation x activation
    MatMuls (the ones named in nodes_to_quantize)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    return {
        "quant_format": QuantFormat.QDQ if fmt.format == "qdq" else QuantFormat.QOperator,
        "activation_type": qtype[fmt.activations],
        "weight_type": qtype[fmt.weights],
        "per_channel": fmt.per_channel,
        "reduce_range": fmt.reduce_range,
        "op_types_to_quantize": list(fmt.quantize_ops),
        "extra_options": {
            "ActivationSymmetric": fmt.symmetric_activations,
            "WeightSymmetric": fmt.symmetric_weights,
            "MatMulConstBOnly": not attention,  # else activation x activation products stay float
            "QuantizeBias": False,  # biases stay float: TensorRT's Q/DQ import takes no int32 bias
            # GEMM outputs stay float (MatMulIntegerToFloat on CPUs; FP16 on TensorRT): measured 1.7x faster
            # than re-quantizing them (qdq-u8s8-outq in benchmarks/quantize_formats.py)
            "OpTypesToExcludeOutputQuantization": list(fmt.quantize_ops),
        },
    }
