"""``export_bundle``: model -> validated deployment bundle for one target, written atomically."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from trm_edge.bundle import store as B
from trm_edge.bundle.manifest import Manifest
from trm_edge.bundle.tolerances import tolerance_for
from trm_edge.errors import ExportError, choices
from trm_edge.export import passes
from trm_edge.export.graphs import build_graph
from trm_edge.export.puzzles import TABLE_DTYPES, PuzzleTable, select_puzzles
from trm_edge.export.samples import puzzle_tokens
from trm_edge.export.validate import (
    check_lines,
    raise_for_failures_all,
    validate_step_graph,
    validate_unrolled_graph,
)
from trm_edge.io import atomic_directory, claims_output
from trm_edge.targets import Target, get_target
from trm_edge.trm.checkpoint import halt_threshold
from trm_edge.version import __version__

GRAPHS = ("step", "unrolled")
VALIDATION_PUZZLES = 2
GOLDEN_MAX_BYTES = 8 << 20  # golden I/O budget; at least step 1 is always kept

Log = Callable[[str], None]


@claims_output()
def export_bundle(
    model,
    output: str | Path,
    *,
    target: str | Target,
    task: str | None,
    graph: str = "step",
    batch: int | None = None,
    force: bool = False,
    puzzles: Sequence[str] | None = None,
    table_dtype: str = "float32",
    identifier_names: Sequence[str] | None = None,
    validation_inputs: np.ndarray | None = None,
    validation_steps: int | None = None,
    external_data_threshold: int = passes.EXTERNAL_DATA_THRESHOLD,
    checkpoint_info: dict[str, Any] | None = None,
    log: Log | None = None,
) -> Path:
    """Export ``model`` (a ``TRM``) for ``target`` into the bundle directory ``output`` and return its path.

    - ``graph``: ``"step"`` (always written) or ``"unrolled"`` (step + all steps in one graph).
    - ``batch``: None for a dynamic batch axis, N for a static one.
    - ``puzzles``: keep only these puzzle identifiers' rows (ids, names, or task names that prefix
      augmented names ``task|||...``) of a many-identifier model's table; ``identifier_names`` are the
      dataset's names (its identifiers.json), index = identifier. ``table_dtype``: how the kept rows are
      stored (``float16`` halves the table; rows are fed as float32).
    - ``validation_inputs``: real puzzles' tokens ``[P, seq_len]`` (default: puzzle-like samples).
    - ``checkpoint_info``: the checkpoint's config.json (``read_checkpoint_info``); its calibrated halting
      threshold becomes ``loop.halt_threshold`` (the solver's default) and its ``data_recipe`` is kept, so
      that quantization can draw calibration puzzles from the model's own distribution.
    Validation runs on every export and raises ``ValidationError`` listing every failed output;
    nothing is left at ``output`` on any error. ``log`` receives progress and check lines.
    """
    log = log or (lambda line: None)
    profile = get_target(target)
    if graph not in GRAPHS:
        raise ExportError(f"unknown graph {graph!r}; choose one of 'step', 'unrolled'")
    if batch is not None and batch < 1:
        raise ExportError(f"--batch {batch} must be at least 1 (omit it for a dynamic batch axis)")
    output = Path(output)
    cfg = model.config
    model.eval()
    if table_dtype not in TABLE_DTYPES:
        raise ExportError(f"--table-dtype {table_dtype!r} is not one of {choices(TABLE_DTYPES)}")
    table = select_puzzles(model, puzzles, identifier_names)
    tokens = _validation_tokens(cfg, task, validation_inputs, batch)
    ids = table.validation_ids(len(tokens)) if table else None
    started = time.perf_counter()

    with atomic_directory(output, force=force) as tmp:
        graphs: dict[str, Any] = {}
        reports = []
        built = _build_checked(model, "step", profile, batch, log)
        step_files = passes.save_model(built.model, tmp / B.STEP_FILE, external_data_threshold=external_data_threshold)
        passes.check_model(tmp / B.STEP_FILE)
        graphs["step"] = _graph_entry(built, step_files, tmp, batch)
        log(f"validating the step graph: {validation_steps or cfg.halt_max_steps} teacher-forced steps x "
            f"{len(tokens)} puzzles + random states (onnxruntime vs torch)")
        golden_steps = _golden_steps(cfg, len(tokens))
        step_report = validate_step_graph(model, tmp / B.STEP_FILE, tokens=tokens, puzzle_ids=ids,
                                          steps=validation_steps, random_states=len(tokens),
                                          golden_steps=golden_steps)
        reports.append(step_report)
        golden = dict(step_report.golden)
        if graph == "unrolled":
            built_u = _build_checked(model, "unrolled", profile, batch, log)
            files = passes.save_model(built_u.model, tmp / B.UNROLLED_FILE,
                                      external_data_threshold=external_data_threshold)
            passes.check_model(tmp / B.UNROLLED_FILE)
            graphs["unrolled"] = _graph_entry(built_u, files, tmp, batch)
            log("validating the unrolled graph against looping the step graph")
            initial = tuple(t.detach().numpy() for t in (model.H_init, model.L_init))
            puzzle = table.embeddings(ids) if table else None
            unrolled_report = validate_unrolled_graph(tmp / B.UNROLLED_FILE, tmp / B.STEP_FILE, tokens=tokens,
                                                      initial_state=initial, steps=cfg.halt_max_steps,
                                                      puzzle_embedding=puzzle, config=cfg)
            reports.append(unrolled_report)
            golden.update(unrolled_report.golden)
            golden["unrolled.inputs"] = tokens
            if puzzle is not None:
                golden["unrolled.puzzle_embedding"] = puzzle
        for line in check_lines(reports):
            log(line)
        raise_for_failures_all(reports)

        manifest = _manifest(model, profile, task, graphs, reports, golden_steps, table, started,
                             checkpoint_info or {}, table_dtype)
        if table is not None:
            table.write(tmp / B.PUZZLE_EMB_FILE, tmp / B.IDENTIFIERS_FILE, dtype=table_dtype)
        np.savez(tmp / B.GOLDEN_FILE, **golden)  # stored, not deflated: simple for C++/Rust npz readers
        golden_section = {"file": B.GOLDEN_FILE, "graph": "step", "keys": sorted(golden),
                              "steps": golden_steps, "puzzles": len(tokens),
                              "tolerance": asdict(tolerance_for("fp32")),
                              "note": "case i: feed inputs[i], z_H[i], z_L[i](, puzzle_embedding[i]) to the "
                                      "step graph and expect z_H_next[i], z_L_next[i], logits[i], "
                                      "q_halt_logits[i] (step[i] = supervision step, 1-based)"}
        export_section = {**manifest.sections["export"], "seconds": round(time.perf_counter() - started, 2)}
        B.write_manifest(tmp, manifest.replace(golden=golden_section,
                                               sections={**manifest.sections, "export": export_section}))
    log(f"wrote {output} ({_size(output)}) in {time.perf_counter() - started:.1f} s")
    return output


def _build_checked(model, kind: str, profile: Target, batch: int | None, log: Log):
    log(f"exporting the {kind} graph (opset {profile.opset}, batch {batch or 'dynamic'})")
    built = build_graph(model, kind=kind, opset=profile.opset, batch=batch)
    before, after = built.cleanup.before, built.cleanup.after
    log(f"  clean-up ({built.cleanup.tool}): {before.nodes:,} -> {after.nodes:,} nodes, "
        f"{before.serialized_bytes / 1e6:.1f} -> {after.serialized_bytes / 1e6:.1f} MB")
    problems = passes.check_target(built.model, profile) + passes.check_weights_once(built.model)
    if problems:
        raise ExportError(f"the {kind} graph does not fit target {profile.name!r}: " + "; ".join(problems))
    return built


def _validation_tokens(cfg, task: str | None, given: np.ndarray | None, batch: int | None) -> np.ndarray:
    if given is not None:
        tokens = np.asarray(given)
        if tokens.ndim != 2 or tokens.shape[1] != cfg.seq_len or len(tokens) == 0:
            raise ExportError(f"validation inputs must be [N, {cfg.seq_len}] tokens, got shape {tokens.shape}")
        if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
            raise ExportError(f"validation inputs must be tokens in [0, {cfg.vocab_size}), got "
                              f"[{tokens.min()}, {tokens.max()}]")
        tokens = tokens.astype(np.int32)
    else:
        tokens = puzzle_tokens(task, cfg.seq_len, cfg.vocab_size, VALIDATION_PUZZLES, seed=0)
    if batch is not None:  # a static graph takes exactly `batch` rows
        tokens = np.resize(tokens, (batch, cfg.seq_len))
    return tokens


def _golden_steps(cfg, puzzles: int) -> list[int]:
    per_step = puzzles * 4 * cfg.total_len * cfg.hidden_size * 4
    wanted = sorted({1, min(2, cfg.halt_max_steps), cfg.halt_max_steps})
    keep = max(1, min(len(wanted), GOLDEN_MAX_BYTES // max(per_step, 1)))
    return wanted[:keep]


def _io_spec(values) -> list[dict[str, Any]]:
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        specs.append({"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
                      "shape": dims})
    return specs


def _graph_entry(built, files: list[Path], root: Path, batch: int | None) -> dict[str, Any]:
    model = built.model
    return {
        "file": files[0].name,
        "external_data": files[1].name if len(files) > 1 else None,
        "batch": batch,
        "opset": passes.default_opset(model),
        "inputs": _io_spec(model.graph.input),
        "outputs": _io_spec(model.graph.output),
        "bytes": sum(f.stat().st_size for f in files),
        **built.report(),
    }


def _manifest(model, profile: Target, task, graphs, reports, golden_steps, table: PuzzleTable | None,
              started: float, checkpoint_info: dict[str, Any], table_dtype: str) -> Manifest:
    import onnxruntime
    import torch

    cfg = model.config
    sections: dict[str, Any] = {
        "target_profile": profile.to_dict(),
        "codec": codec(task, cfg),
        "versions": {
            "trm-edge": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "simplifier": passes.simplifier_name(),
            "opset": profile.opset,
            "python": platform.python_version(),
        },
        "validation": {"passed": True, "reports": [r.to_dict() for r in reports]},
        "export": {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": None},
    }
    if profile.engine_build_on_device:
        sections["engine"] = {"build_on_device": True, "command": "trm-edge build-engine BUNDLE",
                              "reason": "TensorRT engines are specific to the GPU and TensorRT version; "
                                        "they are built on the device that runs them"}
    return Manifest(
        task=task, model=cfg, target=profile.name, precision="fp32", graphs=graphs,
        initial_state={"z_H": model.H_init.detach().float().tolist(), "z_L": model.L_init.detach().float().tolist(),
                       "broadcast_to": ["batch", cfg.total_len, cfg.hidden_size]},
        loop={"max_steps": cfg.halt_max_steps,
              "halt": "a puzzle may stop after the first step whose q_halt_logits > halt_threshold",
              "halt_threshold": halt_threshold(checkpoint_info),
              "state_shape": ["batch", cfg.total_len, cfg.hidden_size],
              "answer": "argmax of logits over the last axis, per position"},
        puzzle_embeddings=None if table is None else table.manifest_entry(B.PUZZLE_EMB_FILE, B.IDENTIFIERS_FILE,
                                                                          dtype=table_dtype),
        data_recipe=checkpoint_info.get("data_recipe") or None, sections=sections)


def codec(task: str | None, cfg) -> dict[str, Any]:
    """How tokens encode the task's puzzles (the official token layout, docs/design.md)."""
    side = math.isqrt(cfg.seq_len)
    base = {"task": task, "seq_len": cfg.seq_len, "vocab_size": cfg.vocab_size, "pad": 0}
    if task == "sudoku":
        return {**base, "grid": [9, 9], "blank": 1, "token": "digit d -> d + 1 (blank -> 1)"}
    if task == "maze":
        return {**base, "grid": [side, side], "charset": "# SGo", "token": "charset[i] -> i + 1"}
    if task == "arc":
        return {**base, "grid": [side, side], "eos": 1, "token": "colour c -> c + 2; EOS 1 marks the grid's "
                                                                  "right and bottom edge"}
    return base


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB"
