"""FP16 step graphs for GPU targets, with the parts that need float32 kept there.

Kept float32: the step graph's inputs and outputs (the state contract is float32, and the host loop carries
the state across 16 steps), and every RMSNorm (square, mean, eps, sqrt, divide: a sum of 512 squares is where
fp16 range and rounding bite; the model computes the norm in float32 too, see trm/model.py ``rms_norm``).
"""

from __future__ import annotations

from collections import defaultdict

import onnx

NORM_OPS = ("Pow", "ReduceMean", "Sqrt", "Reciprocal", "Div")


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


def to_fp16(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, object]]:
    """Convert to float16 with onnxruntime's converter; float32 I/O and norms. Returns the model and a summary."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    unnamed = [n for n in model.graph.node if not n.name]
    for i, node in enumerate(unnamed):
        node.name = f"{node.op_type}_{i}"
    blocked = norm_nodes(model)
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked,
                                         disable_shape_infer=False)
    return converted, {"tool": "onnxruntime.transformers.float16", "float32_nodes": len(blocked),
                       "float32_reason": "RMSNorm statistics and the float32 state I/O"}
