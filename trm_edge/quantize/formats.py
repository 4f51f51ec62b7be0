"""Choices as enums and the target profile's INT8 format as quantizer settings (never ``if target == ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from trm_edge.errors import QuantizationError, choices


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


@dataclass(frozen=True)
class Int8Spec:
    """What the quantizer does for one target: read from ``Target.int8`` (targets/*.yaml)."""

    target: str
    format: str  # qdq | qoperator
    activations: str  # uint8 | int8
    weights: str  # int8 | uint8
    symmetric_activations: bool
    symmetric_weights: bool
    per_channel: bool  # weights per output channel; activations are always per tensor
    reduce_range: bool
    quantize_ops: tuple[str, ...]
    matmul_2d: bool = False  # reshape quantized MatMuls to 2-D operands (graph.flatten_qdq_matmuls)

    @classmethod
    def from_target(cls, target) -> Int8Spec:
        fmt = target.int8
        if fmt is None or "int8" not in target.precisions:
            raise QuantizationError(
                f"target {target.name!r} cannot run int8 (its precisions: {choices(target.precisions)}); "
                "export for a target that lists int8 (trm-edge targets)")
        return cls(target.name, fmt.format, fmt.activations, fmt.weights, fmt.symmetric_activations,
                   fmt.symmetric_weights, fmt.per_channel, fmt.reduce_range, tuple(fmt.quantize_ops), fmt.matmul_2d)

    @property
    def default_method(self) -> Method:
        """Activation ranges when ``--method`` is not given. Symmetric activations (TensorRT) spend half their
        codes on a sign that one-sided outliers stretch: percentile ranges kept the default model's Jetson
        bundle within 0.0-0.4 points of fp32 on two 1,000-puzzle sets (minmax: -1.7 and +0.5) with 90% answer
        agreement. For u8 activations minmax and percentile were within noise of each other (pooled over 2,500
        puzzles: -0.2 and -0.6 points), and minmax clips nothing met at any depth."""
        return Method.PERCENTILE if self.symmetric_activations else Method.MINMAX

    @property
    def label(self) -> str:
        """``qdq-u8s8-per-channel`` style name for reports."""
        a = "u8" if self.activations == "uint8" else "s8"
        w = "u8" if self.weights == "uint8" else "s8"
        sym = "-symmetric" if self.symmetric_activations and self.symmetric_weights else ""
        return f"{self.format}-{a}{w}{sym}-{'per-channel' if self.per_channel else 'per-tensor'}"

    def to_dict(self) -> dict[str, Any]:
        return {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()},
                "label": self.label}

    # -- onnxruntime.quantization arguments ------------------------------------------------------------
    def ort_arguments(self, *, attention: bool = False) -> dict[str, Any]:
        """onnxruntime's quantize_static arguments; ``attention`` lets it quantize activation x activation
        MatMuls (the ones named in nodes_to_quantize)."""
        from onnxruntime.quantization import QuantFormat, QuantType

        qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        return {
            "quant_format": QuantFormat.QDQ if self.format == "qdq" else QuantFormat.QOperator,
            "activation_type": qtype[self.activations],
            "weight_type": qtype[self.weights],
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "op_types_to_quantize": list(self.quantize_ops),
            "extra_options": {
                "ActivationSymmetric": self.symmetric_activations,
                "WeightSymmetric": self.symmetric_weights,
                "MatMulConstBOnly": not attention,  # else activation x activation products stay float
                "QuantizeBias": False,  # biases stay float: TensorRT's Q/DQ import takes no int32 bias
                # GEMM outputs stay float (MatMulIntegerToFloat on CPUs; FP16 on TensorRT): measured 1.7x faster
                # than re-quantizing them (qdq-u8s8-outq in benchmarks/quantize_formats.py)
                "OpTypesToExcludeOutputQuantization": list(self.quantize_ops),
            },
        }
