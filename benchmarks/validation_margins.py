"""How far export validation sits between fp32 rounding and real defects, per output (docs/validation.md).

For each model (the tests' tiny registry and the presets with random weights, a random halting head and
puzzle rows, so every output is a real computation; or a trained checkpoint such as ``default``), on 2
puzzle-like inputs (the seed draws them, and the random weights), teacher-forced for ``steps``
supervision steps plus 2 random states, the worst error over every case as a ratio to the fp32 tolerance
(``err/tol``: validation passes at <= 1):

- ``float64``: the torch fp32 reference against a float64 copy of itself fed the same states: the rounding
  a correct fp32 export may show;
- ``onnxruntime``: the exported step graph against the torch reference (what ``trm-edge export`` checks);
- one column per defect of tests/export/defects.py: the exported graph of a defective copy of the model
  against the intact reference.

    .venv/bin/python benchmarks/validation_margins.py                        # tiny models, 16 seeds
    .venv/bin/python benchmarks/validation_margins.py --models sudoku-extreme-mlp,maze-hard --steps 2 --seeds 1
    .venv/bin/python benchmarks/validation_margins.py --models default --seeds 4 --json margins.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import TINY_CONFIGS, random_trm  # noqa: E402
from tests.export.defects import DEFECTS  # noqa: E402
from trm_edge.bundle.contract import STEP_OUTPUTS  # noqa: E402
from trm_edge.bundle.tolerances import error_ratio, tolerance_for  # noqa: E402
from trm_edge.config import PRESETS  # noqa: E402
from trm_edge.export.graphs import export_step_onnx  # noqa: E402
from trm_edge.export.samples import puzzle_tokens  # noqa: E402
from trm_edge.export.validate import feed_scales, validate_step_graph  # noqa: E402
from trm_edge.trm.checkpoint import load_model, read_checkpoint_info  # noqa: E402

PUZZLES = 2
ROUNDING = ("float64", "onnxruntime")  # the columns a correct export produces
ARC_IDENTIFIERS = 8  # an ARC preset takes its identifier count from the dataset; any few will do here


def model_and_task(name: str, seed: int):
    """A random model of a tiny config or preset, or a trained checkpoint (``default``, a path)."""
    if name in TINY_CONFIGS:
        return random_trm(TINY_CONFIGS[name], seed), None
    if name in PRESETS:
        preset = PRESETS[name]
        config = preset.model
        if preset.task == "arc":
            config = dataclasses.replace(config, num_puzzle_identifiers=ARC_IDENTIFIERS)
        return random_trm(config, seed), preset.task
    return load_model(name).eval(), read_checkpoint_info(name).get("task")


def float64_ratios(model, tokens: np.ndarray, steps: int) -> dict[str, float]:
    """Worst err/tol of the fp32 reference against its float64 copy, teacher-forced on fp32 states."""
    tolerance, cfg = tolerance_for("fp32"), model.config
    wide = copy.deepcopy(model).double()
    inputs = torch.as_tensor(tokens)
    ids = torch.arange(len(tokens)) % cfg.num_puzzle_identifiers
    worst = dict.fromkeys(STEP_OUTPUTS, 0.0)
    with torch.no_grad():
        puzzle = model.puzzle_embedding(ids, len(tokens))
        z_H, z_L = model.initial_state(len(tokens))
        for _ in range(steps):
            ref = model.step_embedded(inputs, z_H, z_L, puzzle)
            scales = feed_scales(model, ref[0], ref[1])
            wide_puzzle = None if puzzle is None else puzzle.double()
            got = wide.step_embedded(inputs, z_H.double(), z_L.double(), wide_puzzle)
            for name, g, r in zip(STEP_OUTPUTS, got, ref, strict=True):
                ratio = error_ratio(g.numpy(), r.numpy(), scales[name], tolerance.for_output(name))
                worst[name] = max(worst[name], ratio)
            z_H, z_L = ref[0], ref[1]
    return worst


def onnx_ratios(model, reference, tokens: np.ndarray, steps: int, workdir: Path) -> dict[str, float]:
    """Worst err/tol of ``model``'s exported step graph against ``reference`` (validation's own check)."""
    path = export_step_onnx(model, workdir / "step.onnx")
    ids = np.arange(len(tokens)) % model.config.num_puzzle_identifiers
    report = validate_step_graph(reference, path, tokens=tokens, puzzle_ids=ids, steps=steps,
                                 random_states=len(tokens))
    return {c.output: c.ratio for c in report.checks}


def measure(name: str, seed: int, steps: int | None, defects: list[str]) -> dict:
    model, task = model_and_task(name, seed)
    config = model.config
    steps = steps or config.halt_max_steps
    tokens = puzzle_tokens(task, config.seq_len, config.vocab_size, PUZZLES, seed=seed)
    started = time.perf_counter()
    columns = {"float64": float64_ratios(model, tokens, steps)}
    with tempfile.TemporaryDirectory() as tmp:
        columns["onnxruntime"] = onnx_ratios(model, model, tokens, steps, Path(tmp))
        for defect in defects:
            columns[defect] = onnx_ratios(DEFECTS[defect](model, seed), model, tokens, steps, Path(tmp))
    return {"model": name, "seed": seed, "steps": steps, "seconds": round(time.perf_counter() - started, 1),
            "ratios": columns}


def summary(rows: list[dict]) -> list[str]:
    """Per model and output, each column's err/tol: rounding columns take the max over seeds (the closest a
    correct export came to failing), defect columns the min (the closest a defect came to passing)."""
    columns = list(dict.fromkeys(c for r in rows for c in r["ratios"]))
    lines = [f"{'model':<20} {'output':<14} {'seeds':>5} " + " ".join(f"{c:>15}" for c in columns)]
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        for output in STEP_OUTPUTS:
            cells = []
            for column in columns:
                values = [r["ratios"][column][output] for r in mine if column in r["ratios"]]
                worst = (max(values) if column in ROUNDING else min(values)) if values else None
                cells.append(f"{worst:>15.3g}" if values else f"{'-':>15}")
            lines.append(f"{name:<20} {output:<14} {len(mine):>5} " + " ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(TINY_CONFIGS), help="tiny registry names and/or presets")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None, help="default: the model's halt_max_steps")
    parser.add_argument("--defects", default=",".join(DEFECTS))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--summarize", type=Path, nargs="*", default=None, help="print the table of saved --json files")
    args = parser.parse_args()
    if args.summarize:
        print("\n".join(summary([row for path in args.summarize for row in json.loads(path.read_text())])))
        return
    defects = [d for d in args.defects.split(",") if d]
    rows = []
    for name in args.models.split(","):
        for seed in range(args.seeds):
            rows.append(measure(name, seed, args.steps, defects))
            per_output = {c: {o: f"{v:.3g}" for o, v in r.items()} for c, r in rows[-1]["ratios"].items()}
            print(json.dumps({"model": name, "seed": seed, "seconds": rows[-1]["seconds"], **per_output}), flush=True)
    print("\n".join(summary(rows)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
