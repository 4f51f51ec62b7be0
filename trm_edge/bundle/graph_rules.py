"""Graph rules shared by the host and device sides: which nodes of a step graph must stay float32 when the rest
runs in reduced precision. The FP16 conversion (trm_edge.quantize.fp16) blocks them and the TensorRT engine
build (trm_edge.runtimes.trt_build) pins their layers to FP32.

Kept float32: every RMSNorm (square, mean, eps, sqrt, divide: a sum of 512 squares is where fp16 range and
rounding bite; the model computes the norm in float32 too, see trm/model.py ``rms_norm``). The step graph's
inputs and outputs stay float32 as well (the state contract, :mod:`trm_edge.bundle.contract`).

Torch-free, and onnx is needed only for the graph passed in: the device side imports this module.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


def norm_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes of every RMSNorm: from each ``ReduceMean`` back to the square feeding it and forward
    through ``Add(eps)``/``Sqrt``/``Reciprocal``/``Div``/``Mul`` to the normalised value."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    keep: list[str] = []

    def add(node: onnx.NodeProto) -> None:
        if node.name not in keep:
            keep.append(node.name)

    for node in graph.node:
        if node.op_type != "ReduceMean":
            continue
        add(node)
        square = producers.get(node.input[0])
        if square is not None and square.op_type in ("Mul", "Pow"):
            add(square)
        frontier = [node]
        for _ in range(4):  # ReduceMean -> Add(eps) -> Sqrt -> (Reciprocal ->) Div/Mul
            nxt = []
            for current in frontier:
                for user in consumers[current.output[0]]:
                    if user.op_type in ("Add", "Sqrt", "Reciprocal", "Div", "Mul"):
                        add(user)
                        if user.op_type in ("Add", "Sqrt", "Reciprocal"):
                            nxt.append(user)
            frontier = nxt
    return keep
