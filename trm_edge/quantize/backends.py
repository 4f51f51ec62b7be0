"""INT8 backends on the bundle's ONNX step graph: onnxruntime.quantization (``ort``) and NNCF (``nncf``).

Both take the prepared float graph, the target's INT8 format (:class:`trm_edge.targets.profile.Int8Format`),
the calibration (ranges for ``ort``, the recursion-aware feeds for ``nncf``, which computes its own statistics
from them) and the nodes to keep float, and return a Q/DQ graph in which only the weight GEMMs' inputs are
quantized.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import onnx

from trm_edge.errors import QuantizationError, RuntimeUnavailableError
from trm_edge.quantize.formats import Backend, Method, ort_arguments
from trm_edge.quantize.graph import flatten_qdq_matmuls, float_for_float_consumers, int8_nodes, retype_activations
from trm_edge.quiet import third_party_output
from trm_edge.targets.profile import Int8Format


def quantize_int8(prepared: onnx.ModelProto, fmt: Int8Format, *, backend: Backend, method: Method,
                  ranges: dict[str, tuple[float, float]] | None = None, reader: Any = None,
                  exclude: list[str] | tuple[str, ...] = (), attention: bool = False
                  ) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The quantized graph and what was done (tool, settings, nodes quantized/kept float). ``attention`` also
    quantizes the attention MatMuls (q @ k^T, weights @ v; onnxruntime only)."""
    check_backend(backend, fmt, attention=attention)
    excluded = set(exclude)
    targets = [n.name for n in int8_nodes(prepared, fmt.quantize_ops, attention=attention)]
    if backend is Backend.ORT:
        if ranges is None:
            raise QuantizationError("the ort backend needs calibration ranges")
        model = _ort(prepared, fmt, ranges, targets, sorted(excluded), attention)
        tool = _version("onnxruntime")
    else:
        if reader is None:
            raise QuantizationError("the nncf backend needs the calibration feeds")
        model, tool = _nncf(prepared, fmt, reader, method, sorted(excluded))
    quantized = {n for n in targets if n not in excluded}
    rewired = float_for_float_consumers(model, quantized) if fmt.format == "qdq" else 0
    flattened = flatten_qdq_matmuls(model) if fmt.matmul_2d else 0
    from trm_edge.export.passes import dedupe_initializers

    merged = dedupe_initializers(model)  # e.g. equal per-channel zero-point vectors of same-shaped weights
    info = {"backend": backend.value, "tool": tool, "quantized_nodes": len(quantized),
            "float_nodes": sorted(excluded & set(targets)), "float_consumers_rewired": rewired,
            "matmuls_made_2d": flattened,
            "initializers_merged": merged}
    return model, info


def check_backend(backend: Backend, fmt: Int8Format, *, attention: bool = False) -> None:
    """The backend is installed, writes the target's format and quantizes what is asked (checked before any
    calibration)."""
    from importlib.util import find_spec

    if backend is not Backend.NNCF:
        return
    if attention:
        raise QuantizationError("--attention-int8 is onnxruntime's (--backend ort)")
    if find_spec("nncf") is None:
        raise RuntimeUnavailableError("the nncf backend needs NNCF: pip install 'trm-edge[nncf]' "
                                      "(or use --backend ort)")
    if fmt.format != "qdq":
        raise QuantizationError(f"the nncf backend writes Q/DQ graphs; the target's INT8 format is {fmt.format!r}")


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return package


def _ort(prepared: onnx.ModelProto, fmt: Int8Format, ranges: dict[str, tuple[float, float]], nodes: list[str],
         exclude: list[str], attention: bool) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, quantize_static, save_tensors_data

    from trm_edge.quantize.calibration import tensors_data

    # The nodes are named because MatMulConstBOnly alone still hands attention's q @ k^T to the quantizer
    # (onnxruntime 1.32).
    args = ort_arguments(fmt, attention=attention)
    with tempfile.TemporaryDirectory(prefix="trm-edge-quant-") as tmp:
        src, dst, cache = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "ranges.json"
        onnx.save(prepared, str(src))
        save_tensors_data(tensors_data(ranges, CalibrationMethod.MinMax), cache)
        try:
            with third_party_output():
                quantize_static(str(src), str(dst), None, calibration_cache_path=str(cache),
                                calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes,
                                nodes_to_exclude=list(exclude), **args)
        except (ValueError, RuntimeError, KeyError, onnx.checker.ValidationError) as error:
            raise QuantizationError(f"onnxruntime quantization failed: {' '.join(str(error).split())[:300]}") \
                from None
        return onnx.load(str(dst))


def _nncf(prepared: onnx.ModelProto, fmt: Int8Format, reader: Any, method: Method,
          exclude: list[str]) -> tuple[onnx.ModelProto, str]:
    import nncf
    from nncf.common.quantization.structs import QuantizationScheme
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
        QuantizationParameters,
    )
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    estimator = {Method.MINMAX: RangeEstimatorParametersSet.MINMAX,
                 Method.PERCENTILE: RangeEstimatorParametersSet.MEAN_QUANTILE,
                 Method.ENTROPY: RangeEstimatorParametersSet.HISTOGRAM}[method]
    symmetric, asymmetric = QuantizationScheme.SYMMETRIC, QuantizationScheme.ASYMMETRIC
    params = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE if fmt.reduce_range else OverflowFix.DISABLE,
        disable_bias_correction=True,  # the GEMMs have no bias, and step-k feeds are not i.i.d. samples
        activations_quantization_params=QuantizationParameters(
            mode=symmetric if fmt.symmetric_activations else asymmetric),
        weights_quantization_params=QuantizationParameters(
            mode=symmetric if fmt.symmetric_weights else asymmetric, per_channel=fmt.per_channel),
        activations_range_estimator_params=estimator,
    )
    quantize_types = set(fmt.quantize_ops)
    other_types = sorted({n.op_type for n in prepared.graph.node} - quantize_types)
    items = list(reader)
    scope = nncf.IgnoredScope(names=list(exclude), types=other_types, validate=False)
    try:
        with third_party_output():
            preset = (nncf.QuantizationPreset.PERFORMANCE if fmt.symmetric_activations
                      else nncf.QuantizationPreset.MIXED)
            model = nncf.quantize(prepared, nncf.Dataset(items), subset_size=len(items), preset=preset,
                                  ignored_scope=scope, advanced_parameters=params)
    except Exception as error:  # NNCF raises many internal types; report it as one line
        raise QuantizationError(f"NNCF quantization failed: {type(error).__name__}: "
                                f"{' '.join(str(error).split())[:300]}") from None
    retype_activations(model, fmt.activations)  # NNCF stores activations as int8; shifting to u8 is exact
    return model, _version("nncf")
