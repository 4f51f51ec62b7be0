"""FP16 step graphs for GPU targets, with the parts that need float32 kept there: the step graph's inputs and
outputs (the state contract is float32, and the host loop carries the state across 16 steps) and every RMSNorm
(the rule lives in :mod:`trm_edge.bundle.graph_rules`, which the TensorRT engine build applies too).
"""

from __future__ import annotations

import onnx

from trm_edge.bundle.graph_rules import norm_nodes


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
