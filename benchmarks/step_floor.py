"""How close to the limit can an INT8 step of these runtimes come? The step's GEMMs at the limit (runtimes/ceiling.py)
plus the work around them that the runtimes execute as separate passes over memory, each timed alone on every
installed CPU runtime, fastest counting: the SwiGLU activations (``silu(gate) * up``), the residual add with its
RMSNorm, and (token-mixing MLP) the two transposes per layer. No graph rewrite that keeps these ops can run a step
faster than this floor on these runtimes; only a kernel that fuses them into the GEMMs could. Also times the
token-mixing GEMM layouts the issue proposed (the sequence axis padded to 128, the product taken from the left).

    .venv/bin/python benchmarks/step_floor.py [--preset sudoku-extreme-mlp] [--batch 16 --batch 1] [--threads N]

Each graph's input is one tensor; the activation multiplies ``silu(x)`` by ``x`` itself, which reads one tensor
where the model reads two, and a call's dispatch time is subtracted as for the limit, so the floor errs low.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trm_edge.config import Gemm, get_preset, swiglu_inner_size
from trm_edge.machine import describe, this_machine, usable_cores
from trm_edge.runtimes import ceiling


def model_bytes(nodes: list, shape: list[int], out_shape: list[int], initializers: list = (),
                input_type: int = TensorProto.FLOAT) -> bytes:
    return ceiling.onnx_bytes(nodes, [helper.make_tensor_value_info("x", input_type, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], list(initializers))


def swiglu_activation(rows: int, width: int) -> bytes:
    """``silu(x) * x`` on ``[rows, width]``."""
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["g"]),
             helper.make_node("Mul", ["g", "x"], ["y"])]
    return model_bytes(nodes, [rows, width], [rows, width])


def residual_rmsnorm(shape: list[int]) -> bytes:
    """``rms_norm(x + x)`` over the last axis, written as the exported graph after quantize's rewrite (the pattern
    onnxruntime fuses)."""
    constants = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                 numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
                 numpy_helper.from_array(np.ones(shape[-1], np.float32), "ones")]
    nodes = [helper.make_node("Add", ["x", "x"], ["r"]), helper.make_node("Pow", ["r", "two"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["m"], axes=[-1]), helper.make_node("Add", ["m", "eps"], ["v"]),
             helper.make_node("Sqrt", ["v"], ["d"]), helper.make_node("Div", ["r", "d"], ["n"]),
             helper.make_node("Mul", ["n", "ones"], ["y"])]
    return model_bytes(nodes, shape, shape, constants)


def transpose(shape: list[int]) -> bytes:
    """The last two axes swapped."""
    perm = [*range(len(shape) - 2), len(shape) - 1, len(shape) - 2]
    return model_bytes([helper.make_node("Transpose", ["x"], ["y"], perm=perm)], shape, [shape[i] for i in perm])


def left_product(lead: list[int], rows: int, k: int, n: int) -> bytes:
    """int8 ``W[rows, k] @ x[batch, k, n]``: the token-mixing product from the left (per-row weight scales), fed
    uint8 activations as ``ceiling.gemm_graph`` is."""
    rng = np.random.default_rng(0)
    constants = [numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
                 numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
                 numpy_helper.from_array(rng.integers(-127, 128, (rows, k)).astype(np.int8), "w_q"),
                 numpy_helper.from_array(np.full(rows, 0.01, np.float32), "w_scale"),
                 numpy_helper.from_array(np.zeros(rows, np.int8), "w_zero")]
    nodes = [helper.make_node("DequantizeLinear", ["x", "x_scale", "x_zero"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
             helper.make_node("MatMul", ["w", "x_dq"], ["y"])]
    return model_bytes(nodes, [*lead, k, n], [*lead, rows, n], constants, TensorProto.UINT8)


def fastest(timers: dict, graph: bytes, feed_shape: Gemm, kind: str = "fp32") -> tuple[float, str, bool]:
    """(seconds, runtime, overhead-bound) of the fastest installed runtime on ``graph`` (its input shaped as
    ``feed_shape``'s x), less the runtime's dispatch time, as the limit's GEMMs are. Overhead-bound: the call took
    under OVERHEAD_BOUND dispatch times, so what is left after subtracting it is mostly noise."""
    seconds, name = min((timer(graph, feed_shape, kind), name)
                        for name, (_, kinds, timer) in timers.items() if kind in kinds)
    return ceiling.less_dispatch(seconds, DISPATCH[name]), name, seconds < OVERHEAD_BOUND * DISPATCH[name]


DISPATCH: dict[str, float] = {}  # seconds per call, by runtime (main fills it)
OVERHEAD_BOUND = 4


DISPATCH: dict[str, float] = {}  # seconds per call, by runtime (main fills it)


def as_input(shape: list[int]) -> Gemm:
    """A Gemm whose ``ceiling.feeds`` x has ``shape`` (2-D, or 3-D with a leading batch over 1)."""
    return Gemm("input", shape[-2], shape[-1], 1, 1, batched=shape[0] if len(shape) == 3 else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="sudoku-extreme-mlp")
    parser.add_argument("--batch", type=int, action="append")
    parser.add_argument("--threads", type=int, default=usable_cores())
    args = parser.parse_args()
    config = get_preset(args.preset).model
    timers = ceiling.installed_timers(args.threads)
    DISPATCH.update({name: ceiling.dispatch_seconds(timer) for name, (_, _, timer) in timers.items()})
    d, s = config.hidden_size, config.total_len
    inner = swiglu_inner_size(d, config.expansion)
    layers = config.applications_per_step * config.L_layers
    print(f"# {args.preset}; {describe(this_machine(args.threads))}; "
          f"runtimes: {', '.join(f'{n} {v}' for n, (v, _, _) in timers.items())}")
    for batch in args.batch or [16, 1]:
        limit = ceiling.measured_limit(config, batch, "int8", threads=args.threads)
        lead = [batch] if batch > 1 else []  # the graphs' shapes, as ceiling.feeds makes inputs
        around = [("channel SwiGLU activation", swiglu_activation(batch * s, inner), [batch * s, inner]),
                  ("residual + RMSNorm over the channels", residual_rmsnorm([*lead, s, d]), [*lead, s, d])]
        if config.mlp_t:
            inner_t = swiglu_inner_size(s, config.expansion)
            around += [("token-mixing SwiGLU activation", swiglu_activation(batch * d, inner_t), [batch * d, inner_t]),
                       ("residual + RMSNorm over the sequence", residual_rmsnorm([*lead, d, s]), [*lead, d, s]),
                       ("transpose there", transpose([*lead, s, d]), [*lead, s, d]),
                       ("transpose back", transpose([*lead, d, s]), [*lead, d, s])]
        print(f"\n## batch {batch}: limit {limit.ms:.1f} ms per step (the GEMMs alone)")
        total, overhead_bound = 0.0, 0
        for name, graph, shape in around:
            seconds, runtime, bound = fastest(timers, graph, as_input(shape))
            total += 1e3 * seconds * layers
            overhead_bound += bound
            print(f"{name:>40}: {1e3 * seconds:7.3f} ms x {layers} = {1e3 * seconds * layers:7.1f} ms ({runtime}"
                  f"{', call overhead dominates' if bound else ''})")
        floor = limit.ms + total
        print(f"{'floor':>40}: {floor:.1f} ms per step = limit / {floor / limit.ms:.2f}: at most "
              f"{100 * limit.ms / floor:.0f}% of the limit without fusing these into the GEMMs"
              + ("" if config.mlp_t else " (attention's softmax and rotary embedding not counted)"))
        if overhead_bound:
            print(f"{'':>40}  NOT A BOUND at this batch: {overhead_bound} of its parts took under {OVERHEAD_BOUND} "
                  "calls' overhead alone, which a graph does not pay per node")
        if config.mlp_t:
            print("### token-mixing GEMM layouts (int8, one product, fastest runtime)")
            inner_t = swiglu_inner_size(s, config.expansion)
            padded = -(s // -64) * 64
            for name, gemm in (("gate half as exported", Gemm("g", batch * d, s, inner_t, 1)),
                               (f"gate half, sequence padded to {padded}", Gemm("g", batch * d, padded, inner_t, 1)),
                               ("down as exported", Gemm("d", batch * d, inner_t, s, 1)),
                               (f"down, sequence padded to {padded}", Gemm("d", batch * d, inner_t, padded, 1))):
                seconds, runtime, _ = fastest(timers, ceiling.gemm_graph(gemm, "int8", "uint8"), gemm, "int8")
                print(f"{name:>40}: {1e3 * seconds:7.3f} ms ({runtime})")
            seconds, runtime, _ = fastest(timers, left_product(lead, inner_t, s, d), as_input([*lead, s, d]), "int8")
            print(f"{'gate half from the left, no transpose':>40}: {1e3 * seconds:7.3f} ms ({runtime})")


if __name__ == "__main__":
    main()
