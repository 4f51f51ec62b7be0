"""Graph passes on ONNX models (onnx only, no torch): clean-up, weight de-duplication, target checks, saving.

The TorchScript exporter shares a parameter between the 21 call sites of the one network through
``Identity`` nodes, and inlines non-persistent buffers (RoPE tables) as one ``Constant`` per call
site. Generic simplifiers (onnxslim) fold those Identities into one initializer copy per call site:
21x the weights. So the clean-up is: rewire the Identities to the shared initializer, simplify with
onnxslim (constant folding, shape-op elimination, dead code), then merge initializers whose contents
are equal. ``check_weights_once`` proves the result.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from trm_edge.errors import ExportError

PROTOBUF_LIMIT = 2**31 - 1  # a single .onnx protobuf file cannot exceed 2 GB
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**26  # initializer bytes above which weights go to an external file
DUPLICATE_MIN_BYTES = 1024  # initializers this small (shapes, scalars) may repeat harmlessly


@dataclass(frozen=True)
class GraphStats:
    nodes: int
    initializers: int
    initializer_bytes: int
    serialized_bytes: int
    op_types: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def graph_stats(model: onnx.ModelProto) -> GraphStats:
    weights = sum(_tensor_nbytes(t) for t in model.graph.initializer)
    constants = sum(_tensor_nbytes(a.t) for n in model.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value")
    return GraphStats(
        nodes=len(model.graph.node),
        initializers=len(model.graph.initializer),
        initializer_bytes=weights + constants,
        serialized_bytes=model.ByteSize(),
        op_types=dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
    )


def _tensor_nbytes(tensor: onnx.TensorProto) -> int:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return next((int(e.value) for e in tensor.external_data if e.key == "length"), 0)
    return numpy_helper.to_array(tensor).nbytes


# -- clean-up ----------------------------------------------------------------------------------------

def bypass_initializer_identities(model: onnx.ModelProto) -> int:
    """Point consumers of ``Identity(initializer)`` at the initializer itself; returns nodes removed."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    _rename_inputs(kept, rename)
    del graph.node[:]
    graph.node.extend(kept)
    return len(rename)


def constants_to_initializers(model: onnx.ModelProto, *, min_bytes: int = DUPLICATE_MIN_BYTES) -> int:
    """Turn large ``Constant`` nodes (tensor values) into initializers, so that equal ones can be merged;
    returns how many were converted."""
    graph = model.graph
    kept, converted = [], 0
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and len(node.attribute) == 1 and numpy_helper.to_array(value).nbytes >= min_bytes:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            converted += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return converted


def dedupe_initializers(model: onnx.ModelProto) -> int:
    """Merge initializers with equal dtype, shape and bytes into one; returns how many were dropped."""
    graph = model.graph
    keep: list[onnx.TensorProto] = []
    first: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    graph_inputs = {i.name for i in graph.input}
    for tensor in graph.initializer:
        if tensor.name in graph_inputs or tensor.data_location == onnx.TensorProto.EXTERNAL:
            keep.append(tensor)
            continue
        array = numpy_helper.to_array(tensor)
        key = (array.dtype.str, array.shape, hashlib.sha256(array.tobytes()).digest())
        if key in first:
            rename[tensor.name] = first[key]
        else:
            first[key] = tensor.name
            keep.append(tensor)
    _rename_inputs(graph.node, rename)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return len(rename)


def _rename_inputs(nodes, rename: dict[str, str]) -> None:
    if not rename:
        return
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]


def simplifier_name() -> str:
    """The registry tool used for simplification, with its version (or 'onnx' when it is missing)."""
    try:
        import onnxslim
    except ImportError:
        return "onnx"
    return f"onnxslim {getattr(onnxslim, '__version__', '?')}"


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding, shape-op elimination and dead-code removal with onnxslim; without onnxslim,
    onnx's own shape inference only (the graph stays correct, just larger)."""
    try:
        import onnxslim
    except ImportError:
        return onnx.shape_inference.infer_shapes(model)
    names = [o.name for o in model.graph.output]
    slim = onnxslim.slim(model)
    if [o.name for o in slim.graph.output] != names:
        raise ExportError(f"onnxslim changed the graph outputs {names} -> {[o.name for o in slim.graph.output]}")
    return slim


@dataclass(frozen=True)
class CleanupReport:
    tool: str
    before: GraphStats
    after: GraphStats
    identities_bypassed: int
    duplicates_merged: int

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "identities_bypassed": self.identities_bypassed,
                "duplicates_merged": self.duplicates_merged,
                "before": {k: v for k, v in self.before.to_dict().items() if k != "op_types"},
                "after": {k: v for k, v in self.after.to_dict().items() if k != "op_types"}}


def cleanup(model: onnx.ModelProto) -> tuple[onnx.ModelProto, CleanupReport]:
    before = graph_stats(model)
    bypassed = bypass_initializer_identities(model)
    constants_to_initializers(model)  # per-call-site copies of buffers (RoPE tables) become mergeable
    merged = dedupe_initializers(model)
    model = simplify(model)
    merged += dedupe_initializers(model)  # folding can recreate equal tensors (e.g. RoPE tables per call site)
    model.producer_name, model.producer_version = "trm-edge", _version()
    return model, CleanupReport(simplifier_name(), before, graph_stats(model), bypassed, merged)


def _version() -> str:
    from trm_edge.version import __version__

    return __version__


# -- checks ------------------------------------------------------------------------------------------

def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_target(model: onnx.ModelProto, target) -> list[str]:
    """Problems that stop ``target`` from importing this graph: opset, unsupported ops, inputs that
    must be initializers, non-zero Q/DQ zero points. Empty when the graph is fine."""
    problems = []
    opset = default_opset(model)
    op_list = target.op_list
    if opset > op_list.max_opset or opset > target.opset:
        problems.append(f"opset {opset} is above target {target.name!r}'s {min(target.opset, op_list.max_opset)}")
    unsupported = sorted({f"{n.domain + '::' if n.domain else ''}{n.op_type}" for n in model.graph.node
                          if not op_list.allows(n.op_type, n.domain, opset)})
    if unsupported:
        problems.append(f"op(s) {', '.join(unsupported)} not in op list {op_list.name!r}")
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for node in model.graph.node:
        for index in op_list.initializer_inputs.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                problems.append(f"{node.op_type} node {node.name!r}: input {index} must be an initializer "
                                f"for {op_list.name!r}")
        if node.op_type in op_list.zero_point_zero:
            problems += [f"{node.op_type} node {node.name!r}: {problem} for {op_list.name!r}"
                         for problem in symmetric_qdq(model, node)]
    return problems


def symmetric_qdq(model: onnx.ModelProto, node: onnx.NodeProto) -> list[str]:
    """What TensorRT's ONNX parser (8.5 on) refuses in a Q/DQ node: a missing zero-point input, a zero point
    that is not an int8 0, a scale that is not a positive constant."""
    problems = []
    zero = _constant_value(model, node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero is None:
        problems.append("zero point must be given (an int8 constant 0)")
    elif zero.dtype != np.int8 or np.any(zero != 0):
        problems.append(f"zero point must be an int8 0 (is {zero.dtype} {zero.reshape(-1)[:4].tolist()})")
    scale = _constant_value(model, node.input[1]) if len(node.input) > 1 else None
    if scale is None or not np.all(scale > 0):
        problems.append("scale must be a positive constant")
    return problems


def _constant_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def check_weights_once(model: onnx.ModelProto, *, min_bytes: int = DUPLICATE_MIN_BYTES) -> list[str]:
    """Initializers (or Constant nodes) of at least ``min_bytes`` whose contents appear more than once."""
    seen: dict[bytes, str] = {}
    problems = []
    tensors = [(t.name, t) for t in model.graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL]
    tensors += [(n.output[0], a.t) for n in model.graph.node if n.op_type == "Constant"
                for a in n.attribute if a.name == "value"]
    for name, tensor in tensors:
        array = numpy_helper.to_array(tensor)
        if array.nbytes < min_bytes:
            continue
        key = hashlib.sha256(array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()).digest()
        if key in seen:
            problems.append(f"{name!r} duplicates {seen[key]!r} ({array.nbytes:,} bytes)")
        else:
            seen[key] = name
    return problems


def check_model(path: Path) -> None:
    """onnx.checker with full shape inference, on the file (so external data is followed)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"{path.name} fails the ONNX checker: {' '.join(str(error).split())[:300]}") from None


# -- saving ------------------------------------------------------------------------------------------

def save_model(model: onnx.ModelProto, path: Path, *, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
               ) -> list[Path]:
    """Save ``model``; weights go to ``<name>.data`` beside it when they pass the threshold (the 2 GB
    protobuf limit). Returns the files written."""
    path = Path(path)
    weights = sum(_tensor_nbytes(t) for t in model.graph.initializer)
    if weights <= external_data_threshold and model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save_model(model, str(path))
        return [path]
    data = path.with_name(path.name + ".data")
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return [path, data]
