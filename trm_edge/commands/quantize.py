"""CLI command: quantize (fp32 bundle -> INT8 or FP16 bundle, with a parity report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import typer

from trm_edge.commands.output import console, print_json
from trm_edge.progress import err_console


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command()(quantize)


def quantize(
    bundle: Path = typer.Argument(..., help="An fp32 bundle (from trm-edge export)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 in the target profile's format, calibrated on puzzles."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 (GPU targets), float32 I/O and norms."),
    output: Path = typer.Option(..., "-o", "--output", help="The quantized bundle directory to write."),
    calib: Path = typer.Option(None, "--calib", help="Calibration dataset directory (official layout: train split "
                                                     "calibrates and validates, test split is held out)."),
    calib_task: str = typer.Option(None, "--calib-task", help="Draw calibration puzzles with this task's generator "
                                                              "(sudoku, maze)."),
    calib_n: int = typer.Option(None, "--calib-n", help="Calibration puzzles; every supervision step of each is "
                                "used (default 64 for 81-token puzzles, fewer for longer ones: 16 for 900)."),
    val_n: int = typer.Option(None, "--val-n", help="Validation puzzles for --max-drop (default 200 with it)."),
    eval_n: int = typer.Option(None, "--eval-n", help="Held-out puzzles for the parity report (0: sizes and "
                               "throughput only; default 128 for 81-token puzzles, fewer for longer ones: 16 for "
                               "900)."),
    backend: str = typer.Option("ort", "--backend", help="ort (onnxruntime.quantization) or nncf."),
    method: str = typer.Option(None, "--method", help="Activation ranges: minmax, entropy or percentile "
                               "(default: percentile for symmetric-activation formats such as TensorRT's, else "
                               "minmax)."),
    max_drop: float = typer.Option(None, "--max-drop", help="Keep the most sensitive weight groups float until at "
                                                            "most this many exact-accuracy points are lost."),
    exclude: List[str] = typer.Option(None, "--exclude", help="Keep float: a node name, op type, weight group or "
                                                              "glob (repeatable)."),
    calib_halt: bool = typer.Option(False, "--calib-halt", help="Stop each calibration trajectory at its halting "
                                                                "step (default: all steps)."),
    calib_steps: int = typer.Option(None, "--calib-steps", help="Supervision steps recorded per calibration puzzle "
                                    "(default: all of the model's). Fewer is faster on large models but leaves "
                                    "later steps' ranges unseen: calibration.json reports the coverage per step."),
    smooth: float = typer.Option(0.8, "--smooth", help="SwiGLU smoothing strength alpha in 0..1: moves the down "
                                                       "projection's input outliers into the up projection "
                                                       "(exact in float)."),
    no_smooth: bool = typer.Option(False, "--no-smooth", help="Quantize without SwiGLU smoothing."),
    attention_int8: bool = typer.Option(False, "--attention-int8", help="Also quantize attention's q @ k^T and "
                                        "weighted sum of v (default: float; see the README for what it costs)."),
    seed: int = typer.Option(0, "--seed", help="Seed for generated calibration puzzles."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip the parity report (accuracy, throughput)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Quantize a bundle: INT8 calibrated on the states of real recursion trajectories, or FP16; writes a new
    bundle with its parity report (parity.json, parity.png)."""
    from trm_edge.errors import QuantizationError

    if int8 == fp16:
        raise QuantizationError("choose one precision: --int8 or --fp16")
    if calib is not None and calib_task is not None:
        raise QuantizationError("give --calib DIR or --calib-task TASK, not both")
    if int8 and calib is None and calib_task is None:
        raise QuantizationError("--int8 needs calibration puzzles: --calib DIR or --calib-task TASK [--calib-n N]")
    from trm_edge.io import check_output, check_space
    from trm_edge.quantize.pipeline import QuantizeOptions, quantize_bundle

    check_output(output, force=force)
    check_space(output, _quantized_bytes(bundle, int8=int8))

    options = QuantizeOptions(
        precision="int8" if int8 else "fp16", backend=backend, method=method,
        calib_dir=None if calib is None else str(calib), calib_task=calib_task, calib_n=calib_n, val_n=val_n,
        eval_n=eval_n, seed=seed, max_drop=max_drop, exclude=tuple(exclude or ()), calib_halt=calib_halt,
        calib_steps=calib_steps, report=not no_report, smooth=None if no_smooth else smooth,
        attention_int8=attention_int8)
    log_console = err_console if as_json else console
    result = quantize_bundle(bundle, output, options, force=force,
                             log=lambda line: log_console.print(line, markup=False, highlight=False))
    if as_json:
        print_json(result.to_dict())
        return
    _print_summary(result.quantization, result.report)


def _quantized_bytes(bundle: Path, *, int8: bool) -> int:
    """At least what the quantized bundle will take: the float bundle's other files as they are (its golden I/O is
    rewritten with more keys) and its step graph at a quarter (INT8) or a half (FP16) of its float32 size; an
    unrolled graph is dropped. 0 for a directory that is no bundle: quantize says what is wrong with it."""
    from trm_edge.bundle.store import STEP_FILE, UNROLLED_FILE

    if not bundle.is_dir():
        return 0
    total = 0
    for path in bundle.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue
        size = path.stat().st_size
        if path.name.startswith(STEP_FILE):  # the graph and its external weights, if any
            size //= 4 if int8 else 2
        elif path.name.startswith(UNROLLED_FILE):
            size = 0
        total += size
    return total


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _print_summary(info: dict[str, Any], report: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{info['precision']} {info['format'].get('label', '')}: fp32 vs quantized", show_lines=False)
    table.add_column("metric")
    table.add_column("fp32", justify="right")
    table.add_column("quantized", justify="right")
    sizes = info["sizes"]
    table.add_row("step graph", f"{sizes['float_step_bytes'] / 1e6:.2f} MB",
                  f"{sizes['step_bytes'] / 1e6:.2f} MB ({sizes['ratio']:.2f}x)")
    parity = report.get("parity")
    if parity:
        acc = parity["accuracy"]
        table.add_row(f"exact accuracy ({parity['puzzles']} held out)", _pct(acc["exact"]["float"]),
                      _pct(acc["exact"]["quantized"]))
        table.add_row("cell accuracy", _pct(acc["cell"]["float"]), _pct(acc["cell"]["quantized"]))
        table.add_row("answer agreement", "", _pct(parity["answers"]["answer_agreement"]))
        halting = parity["halting"]
        table.add_row("mean steps (halting)", f"{halting['mean_steps']['float']:.2f}",
                      f"{halting['mean_steps']['quantized']:.2f}")
        table.add_row("halting-step agreement", "", _pct(halting["steps_agreement"]))
        last = parity["per_step"][-1]
        table.add_row(f"teacher-forced argmax agreement, step {last['step']}", "",
                      _pct(last["argmax_agreement"]))
    speed = report.get("throughput")
    if speed:
        table.add_row(f"puzzles/s ({speed['full_steps']} steps, batch {speed['batch']})",
                      f"{speed['float']['puzzles_per_s']:.2f}",
                      f"{speed['quantized']['puzzles_per_s']:.2f} ({speed['speedup']:.2f}x)")
    console.print(table)
    if info.get("float_groups"):
        console.print(f"kept float: {', '.join(info['float_groups'])}")
    control = info.get("accuracy_control")
    if control:
        console.print(f"accuracy control: drop {control['final_drop_points']:.2f} points "
                      f"(allowed {control['max_drop_points']}) on {info['calibration']['validation_puzzles']} "
                      "validation puzzles")
