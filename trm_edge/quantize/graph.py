"""Graph work around quantization (onnx only, no torch): exact pre-passes, the quantizable nodes and their
groups, ``--exclude`` resolution, and the post-pass that keeps non-GEMM consumers in float.

The pre-pass keeps the float function (up to summation order), so the float and quantized bundles compute
the same network; it only changes how much non-MatMul work the runtime does.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from trm_edge.errors import QuantizationError, choices

WEIGHT_OPS = ("MatMul", "Gemm")  # ops whose second input is a weight initializer when quantizable


def _ints(name: str, constants: dict[str, np.ndarray]) -> list[int] | None:
    if not name or name not in constants:
        return None
    return [int(v) for v in constants[name].reshape(-1)]


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if len(t.dims) <= 1}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def split_sliced_matmuls(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace ``MatMul(x, W)`` whose output only feeds last-axis ``Slice``s with constant bounds (SwiGLU's
    ``chunk(2)``) by one MatMul per slice with those columns of ``W``.

    onnxruntime turns the two Slices into a Split that copies the whole [B, L, 2I] product: 10% of the fp32
    step and 17% of the int8 step of the 5M model (benchmarks/quantize_formats.py). Sliced weights are created
    once per (weight, columns) and shared by every call site of the recursive block, so each is quantized once.
    Returns the model (changed in place) and the number of MatMuls rewritten.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    constants = _constants(graph)
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    graph_outputs = {o.name for o in graph.output}
    sliced: dict[tuple[str, int, int], str] = {}
    arrays: dict[str, np.ndarray] = {}
    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.output[0] in graph_outputs:
            continue
        weight = node.input[1]
        if len(inits[weight].dims) != 2:
            continue
        columns = inits[weight].dims[1]
        users = consumers[node.output[0]]
        plan = []
        for user in users:
            if user.op_type != "Slice" or len(user.input) < 4:
                break
            starts, ends, axes = (_ints(user.input[i], constants) for i in (1, 2, 3))
            steps = _ints(user.input[4], constants) if len(user.input) > 4 and user.input[4] else [1]
            if None in (starts, ends, axes) or len(axes) != 1 or axes[0] != -1 or steps != [1]:
                break
            start, end = (min(max(v + (columns if v < 0 else 0), 0), columns) for v in (starts[0], ends[0]))
            if end <= start:
                break
            plan.append((user, start, end))
        else:
            if not plan:
                continue
            new_nodes = []
            for user, start, end in plan:
                key = (weight, start, end)
                if key not in sliced:
                    if weight not in arrays:
                        arrays[weight] = numpy_helper.to_array(inits[weight])
                    sliced[key] = f"{weight}_cols{start}_{end}"
                    graph.initializer.append(numpy_helper.from_array(
                        np.ascontiguousarray(arrays[weight][:, start:end]), sliced[key]))
                new_nodes.append(helper.make_node("MatMul", [node.input[0], sliced[key]], [user.output[0]],
                                                  name=f"{node.name}/cols{start}_{end}"))
                drop.add(id(user))
            replace[id(node)] = new_nodes
    if not replace:
        return model, 0
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if id(node) in replace:
            nodes.extend(replace[id(node)])
        elif id(node) not in drop:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    return model, len(replace)


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def rmsnorm_for_fusion(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Write each weightless RMSNorm ``x * (1 / sqrt(mean(x*x) + eps))`` as ``x / sqrt(mean(x^2) + eps) * 1``
    (``Pow``, ``Div``, a ``Mul`` by a ones vector): the pattern onnxruntime fuses into one
    ``SimplifiedLayerNormalization`` kernel (it needs the ``Pow`` and a scale). Same ops TensorRT parses; the
    value changes only by float rounding (x/s vs x*(1/s)). Needs the normalised axis' size (shape inference);
    norms where it is unknown stay as they are. Returns the model and the number of norms rewritten."""
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    constants = _constants(graph)
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def only_user(node: onnx.NodeProto, op: str) -> onnx.NodeProto | None:
        users = consumers[node.output[0]]
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def is_scalar(name: str, value: float | None = None) -> bool:
        return name in constants and constants[name].size == 1 and (
            value is None or float(constants[name].reshape(-1)[0]) == value)

    new_nodes: list[tuple[onnx.NodeProto, onnx.NodeProto]] = []
    removed: set[int] = set()
    two = "__rmsnorm_two"
    for mean in [n for n in graph.node if n.op_type == "ReduceMean"]:
        square = producers.get(mean.input[0])
        axes = next((list(a.ints) for a in mean.attribute if a.name == "axes"), None)
        keep = next((a.i for a in mean.attribute if a.name == "keepdims"), 1)
        if square is None or square.op_type != "Mul" or square.input[0] != square.input[1] or axes != [-1] or not keep:
            continue
        x = square.input[0]
        add = only_user(mean, "Add")
        sqrt = only_user(add, "Sqrt") if add else None
        recip = only_user(sqrt, "Div") if sqrt else None
        scale = only_user(recip, "Mul") if recip else None
        size = (dims.get(x) or [None])[-1]
        if (scale is None or not is_scalar(recip.input[0], 1.0) or recip.input[1] != sqrt.output[0]
                or x not in scale.input or not any(is_scalar(i) for i in add.input) or not size
                or len(consumers[square.output[0]]) != 1):
            continue
        ones = f"__rmsnorm_ones_{size}"
        if ones not in constants:
            graph.initializer.append(numpy_helper.from_array(np.ones(size, np.float32), ones))
            constants[ones] = np.ones(size, np.float32)
        if two not in constants:
            graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), two))
            constants[two] = np.array(2.0, np.float32)
        square.op_type = "Pow"
        square.input[1] = two
        out = scale.output[0]
        divide = helper.make_node("Div", [x, sqrt.output[0]], [f"{out}/unscaled"], name=f"{recip.name}/x")
        multiply = helper.make_node("Mul", [f"{out}/unscaled", ones], [out], name=f"{scale.name}/ones")
        removed |= {id(recip), id(scale)}
        new_nodes.append((scale, divide))
        new_nodes.append((scale, multiply))
    if not new_nodes:
        return model, 0
    after: dict[int, list[onnx.NodeProto]] = defaultdict(list)
    for anchor, node in new_nodes:
        after[id(anchor)].append(node)
    nodes = []
    for node in graph.node:
        if id(node) not in removed:
            nodes.append(node)
        nodes.extend(after.get(id(node), []))
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)
    return model, len(new_nodes) // 2


def prepare(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """The exact pre-quantization passes, in order; returns the model and what each pass changed."""
    from trm_edge.export.passes import bypass_initializer_identities, dedupe_initializers

    report = {"identities_bypassed": bypass_initializer_identities(model)}
    report["duplicates_merged"] = dedupe_initializers(model)
    model, report["matmuls_split"] = split_sliced_matmuls(model)
    model, report["norms_for_fusion"] = rmsnorm_for_fusion(model)
    return model, report


# -- quantizable nodes, their groups, --exclude ----------------------------------------------------------


@dataclass(frozen=True)
class NodeGroup:
    """The call sites of one weight: the recursive block applies each weight 21x per supervision step, and a
    group is what accuracy control keeps float or not (the weight is quantized once for all of them)."""

    name: str  # the first call site's node name (no call-site suffix)
    weight: str
    op_type: str
    nodes: tuple[str, ...]
    weight_elements: int


def quantizable_nodes(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[onnx.NodeProto]:
    """Nodes of ``op_types`` whose weight (input 1) is an initializer: the GEMMs that int8 accelerates."""
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type in op_types and n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in inits]


def attention_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMuls of two activations: attention's q @ k^T and its weighted sum of v (none in mlp_t models)."""
    inits = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and not inits.intersection(n.input)]


def int8_nodes(model: onnx.ModelProto, op_types: tuple[str, ...], *, attention: bool = False) -> list[onnx.NodeProto]:
    """The nodes INT8 quantizes: the weight GEMMs, and with ``attention`` also the attention MatMuls."""
    return quantizable_nodes(model, op_types) + (attention_matmuls(model) if attention else [])


def node_groups(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[NodeGroup]:
    inits = {t.name: t for t in model.graph.initializer}
    by_weight: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in quantizable_nodes(model, op_types):
        by_weight[node.input[1]].append(node)
    groups = []
    for weight, nodes in by_weight.items():
        first = min(nodes, key=lambda n: (len(n.name), n.name))
        groups.append(NodeGroup(first.name or weight, weight, first.op_type, tuple(n.name for n in nodes),
                                int(np.prod(inits[weight].dims))))
    return groups


def resolve_excludes(model: onnx.ModelProto, patterns: list[str], op_types: tuple[str, ...]) -> list[str]:
    """Node names to keep float for ``--exclude`` entries: a node name, an op type (``Gemm``), a group name (all
    call sites of its weight), or a glob over node names (``*lm_head*``). An entry matching nothing is an error."""
    nodes = quantizable_nodes(model, op_types)
    names = [n.name for n in nodes]
    groups = {g.name: g for g in node_groups(model, op_types)}
    excluded: list[str] = []
    for pattern in patterns:
        if pattern in groups:
            hit = list(groups[pattern].nodes)
        elif any(n.op_type == pattern for n in model.graph.node):
            hit = [n.name for n in nodes if n.op_type == pattern]
        else:
            hit = [name for name in names if name == pattern or fnmatch.fnmatchcase(name, pattern)]
        if not hit:
            raise QuantizationError(
                f"--exclude {pattern!r} matches no quantizable node; give a node name, an op type "
                f"({choices(sorted({n.op_type for n in nodes}))}), a glob, or one of the groups "
                f"{choices(sorted(groups))}")
        excluded += [h for h in hit if h not in excluded]
    return excluded


# -- post-pass ---------------------------------------------------------------------------------------------


def float_for_float_consumers(model: onnx.ModelProto, quantized: set[str]) -> int:
    """onnxruntime's Q/DQ insertion hands the dequantized tensor to *every* consumer, graph outputs included, so
    the residual stream, the norms and the next step's state would see int8-rounded values at each of the 42
    applications per step. Point every consumer that is not a quantized node, and every graph output, back at
    the float tensor: only GEMM inputs are quantized (the target formats' contract; TensorRT runs the rest in
    FP16). Returns the number of inputs and outputs rewired."""
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rewired = 0
    # A quantized graph output: producer -> X_QuantizeInput -> Q -> DQ -> X. Give X back to the producer.
    for node in list(graph.node):
        if node.op_type != "DequantizeLinear" or node.output[0] not in outputs:
            continue
        q = producers.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue
        name, float_name, dq_name = node.output[0], q.input[0], node.output[0] + "_dequantized"
        node.output[0] = dq_name
        for other in graph.node:
            if other is node:
                continue
            for i, value in enumerate(other.input):
                if value == name:
                    other.input[i] = dq_name
                elif value == float_name:
                    other.input[i] = name
            for i, value in enumerate(other.output):
                if value == float_name:
                    other.output[i] = name
        rewired += 1
    producers = {o: n for n in graph.node for o in n.output}
    float_of: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q = producers.get(node.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in inits:
            continue
        float_of[node.output[0]] = q.input[0]
    for node in graph.node:
        if node.name in quantized or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            if name in float_of:
                node.input[i] = float_of[name]
                rewired += 1
    _remove_dead(graph, outputs)
    return rewired


def _remove_dead(graph: onnx.GraphProto, outputs: set[str]) -> None:
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    _drop_unused_initializers(graph)


def flatten_qdq_matmuls(model: onnx.ModelProto) -> int:
    """Give every quantized weight MatMul 2-D operands. TensorRT quantizes MatMul weights per channel only when
    both operands are matrices (its explicit-quantization rules), and ours multiply [batch, tokens, hidden]
    activations. ``x -Q/DQ-> MatMul(., DQ(W))`` becomes ``Reshape(x, [-1, K]) -Q/DQ-> MatMul -> Reshape([-1, T, N])``:
    the activation scale is per tensor, so it commutes with the reshape and the function is unchanged.
    Returns the MatMuls rewritten."""
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {v.name: [d.dim_value or None for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    producers = {o: n for n in graph.node for o in n.output}
    weights = {t.name: list(t.dims) for t in graph.initializer}
    nodes, flattened = [], 0
    for node in graph.node:
        nodes.append(node)
        act, weight = (producers.get(name) for name in node.input[:2]) if node.op_type == "MatMul" else (None, None)
        if not (act and weight and act.op_type == weight.op_type == "DequantizeLinear" and weight.input[0] in weights):
            continue
        quantize = producers.get(act.input[0])
        x = quantize.input[0] if quantize is not None and quantize.op_type == "QuantizeLinear" else None
        shape, w_shape = shapes.get(x or ""), weights[weight.input[0]]
        if shape is None or len(shape) != 3 or shape[1] is None or len(w_shape) != 2:
            continue
        (k, n), tokens, tag = w_shape, shape[1], node.name or node.output[0]
        to_2d, to_3d = _shape_constant(graph, [-1, k]), _shape_constant(graph, [-1, tokens, n])
        nodes[-1:] = [
            helper.make_node("Reshape", [x, to_2d], [f"{tag}/x_2d"], name=f"{tag}/Reshape_2d"),
            helper.make_node("QuantizeLinear", [f"{tag}/x_2d", *quantize.input[1:]], [f"{tag}/x_2d_q"],
                             name=f"{tag}/QuantizeLinear_2d"),
            helper.make_node("DequantizeLinear", [f"{tag}/x_2d_q", *act.input[1:]], [f"{tag}/x_2d_dq"],
                             name=f"{tag}/DequantizeLinear_2d"),
            helper.make_node("MatMul", [f"{tag}/x_2d_dq", node.input[1]], [f"{tag}/y_2d"], name=node.name),
            helper.make_node("Reshape", [f"{tag}/y_2d", to_3d], list(node.output), name=f"{tag}/Reshape_3d"),
        ]
        for new, old in ((nodes[-4], quantize), (nodes[-3], act)):
            new.attribute.extend(old.attribute)
        flattened += 1
    del graph.node[:]
    graph.node.extend(nodes)
    _remove_dead(graph, {o.name for o in graph.output})  # Q/DQ pairs no other node reads
    return flattened


def _shape_constant(graph: onnx.GraphProto, dims: list[int]) -> str:
    name = "shape_" + "x".join(str(d) for d in dims).replace("-1", "N")
    if all(t.name != name for t in graph.initializer):
        graph.initializer.append(numpy_helper.from_array(np.array(dims, np.int64), name))
    return name


def zero_points(model: onnx.ModelProto) -> list[tuple[str, str, np.ndarray]]:
    """``(node, op_type, zero point)`` of every Q/DQ node (for format checks: TensorRT wants int8 zeros)."""
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    values.update(_constants(model.graph))
    found = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = values.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            found.append((node.name, node.op_type, zp))
    return found


def retype_activations(model: onnx.ModelProto, dtype: str) -> int:
    """Store activation Q/DQ pairs as ``dtype`` (``uint8`` or ``int8``) by shifting the zero point by 128: exact
    (same scale, same rounding grid). NNCF writes int8 activations; x86 VNNI wants u8 x s8. Returns pairs changed."""
    want = {"uint8": np.uint8, "int8": np.int8}[dtype]
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    changed = 0
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in inits or len(node.input) < 3:
            continue
        zp_name = node.input[2]
        if zp_name not in inits:
            continue
        zp = numpy_helper.to_array(inits[zp_name])
        if zp.dtype == want:
            continue
        shifted = (zp.astype(np.int32) + (128 if want is np.uint8 else -128)).astype(want)
        new_name = f"{zp_name}_{dtype}"
        if new_name not in inits:
            tensor = numpy_helper.from_array(shifted, new_name)
            graph.initializer.append(tensor)
            inits[new_name] = tensor
        node.input[2] = new_name
        for dq in consumers[node.output[0]]:
            if dq.op_type == "DequantizeLinear" and len(dq.input) > 2 and dq.input[2] == zp_name:
                dq.input[2] = new_name
        changed += 1
    _drop_unused_initializers(graph)
    return changed


# -- SwiGLU smoothing (calibrated, exact) -------------------------------------------------------------------


@dataclass(frozen=True)
class SwigluPair:
    """A SwiGLU ``down(silu(gate) * up)`` whose ``up`` and ``down`` weights are used nowhere else: a per-channel
    scale moves from the product (the down projection's input, the hardest activation to quantize per tensor)
    into ``up``'s columns and ``down``'s rows without changing the function."""

    up_weight: str
    down_weight: str
    tensors: tuple[str, ...]  # the down projection's input at every call site


def swiglu_pairs(model: onnx.ModelProto, op_types: tuple[str, ...] = ("MatMul",)) -> list[SwigluPair]:
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    uses: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name in inits:
                uses[name].append(node)
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for down in quantizable_nodes(model, op_types):
        if down.op_type != "MatMul" or len(inits[down.input[1]].dims) != 2:
            continue
        product = producers.get(down.input[0])
        if product is None or product.op_type != "Mul" or len(consumers[down.input[0]]) != 1:
            continue
        ups = [producers.get(i) for i in product.input]
        ups = [u for u in ups if u is not None and u.op_type == "MatMul" and u.input[1] in inits
               and len(consumers[u.output[0]]) == 1 and len(inits[u.input[1]].dims) == 2]
        if len(ups) != 1:
            continue
        found[(ups[0].input[1], down.input[1])].append(down.input[0])
    pairs = []
    for (up_w, down_w), tensors in found.items():
        calls = len(tensors)
        if len(uses[up_w]) != calls or len(uses[down_w]) != calls:
            continue  # a weight used elsewhere cannot be rescaled
        pairs.append(SwigluPair(up_w, down_w, tuple(tensors)))
    return pairs


def smooth_swiglu(model: onnx.ModelProto, pairs: list[SwigluPair], channel_absmax: dict[str, np.ndarray], *,
                  alpha: float = 0.5) -> dict[str, np.ndarray]:
    """SmoothQuant's migration, exact for SwiGLU: s_j = amax_j^alpha / wmax_j^(1 - alpha) from the product's
    per-channel |max| over every call site and step (``channel_absmax``) and the down weight's row maxima;
    ``up[:, j] /= s_j``, ``down[j, :] *= s_j`` (in place). Returns the scales per pair (by down weight)."""
    inits = {t.name: t for t in model.graph.initializer}
    scales = {}
    for pair in pairs:
        amax = np.max([channel_absmax[t] for t in pair.tensors], axis=0).astype(np.float64)
        up = numpy_helper.to_array(inits[pair.up_weight]).astype(np.float64)
        down = numpy_helper.to_array(inits[pair.down_weight]).astype(np.float64)
        wmax = np.abs(down).max(axis=1)
        s = np.power(np.maximum(amax, 1e-8), alpha) / np.power(np.maximum(wmax, 1e-8), 1.0 - alpha)
        s = np.clip(s / np.exp(np.mean(np.log(s))), 1e-4, 1e4)  # geometric mean 1: weights keep their scale
        inits[pair.up_weight].CopyFrom(numpy_helper.from_array((up / s[None, :]).astype(np.float32), pair.up_weight))
        inits[pair.down_weight].CopyFrom(numpy_helper.from_array((down * s[:, None]).astype(np.float32),
                                                                 pair.down_weight))
        scales[pair.down_weight] = s.astype(np.float32)
    return scales
