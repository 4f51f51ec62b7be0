"""CLI commands: export (model -> validated bundle for a target) and targets (list device profiles)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from trm_edge.commands.output import console, print_json
from trm_edge.progress import err_console


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command()(export)
    app.command()(targets)


def export(
    model: str = typer.Argument(..., help="Checkpoint directory, or 'default'."),
    target: str = typer.Option(..., "--target", "-t", help="Device target (see `trm-edge targets`), e.g. jetson, cpu."),
    output: Path = typer.Option(..., "-o", "--output", help="Bundle directory to write."),
    graph: str = typer.Option("step", "--graph", help="step (one supervision step) or unrolled (also all steps in "
                                                      "one graph)."),
    batch: int = typer.Option(None, "--batch", help="Static batch size (default: dynamic batch axis)."),
    puzzles: List[str] = typer.Option(None, "--puzzles", help="Keep only these puzzle identifiers' embedding rows "
                                                              "(ids, names or task names; comma-separated)."),
    tasks: List[Path] = typer.Option(None, "--tasks", help="ARC: keep only the embedding rows of the tasks in these "
                                     "task files (one task's JSON, a *_challenges.json, or a directory of them): the "
                                     "tasks the device will solve."),
    table_dtype: str = typer.Option("float32", "--table-dtype", help="How the puzzle-embedding table is stored: "
                                    "float32, or float16 (half the bytes; rows are fed as float32)."),
    identifiers: Path = typer.Option(None, "--identifiers", help="The dataset's identifiers.json (names of the "
                                                                 "puzzle identifiers; default: the checkpoint's own), "
                                                                 "for --puzzles by name and for ARC solving."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Export a model to a validated deployment bundle (ONNX graphs, initial state, golden I/O)."""
    from trm_edge.io import check_output, check_space
    from trm_edge.targets import get_target

    profile = get_target(target)  # an unknown target or an unwritable output fails before anything heavy loads
    check_output(output, force=force)
    from trm_edge.trm.checkpoint import load_model, read_checkpoint_info, read_identifier_names, resolve_model_path

    names = read_identifier_names(identifiers or resolve_model_path(model))
    info = read_checkpoint_info(model)  # torch-free: a non-checkpoint fails fast
    check_space(output, _bundle_bytes(resolve_model_path(model), info, graph))
    task = info.get("task")
    from trm_edge.export.exporter import export_bundle

    trm = load_model(model)
    log_console = err_console if as_json else console
    wanted = [p.strip() for item in puzzles or () for p in item.split(",") if p.strip()]
    if tasks:
        from trm_edge.puzzles.arc import load_tasks

        wanted += [name for source in tasks for name in load_tasks(source)]
    path = export_bundle(trm, output, target=profile, task=task, graph=graph, batch=batch, force=force,
                         puzzles=wanted or None, table_dtype=table_dtype, identifier_names=names,
                         checkpoint_info=info, log=_printer(log_console))
    from trm_edge.bundle.store import load_bundle

    manifest = load_bundle(path).manifest
    engine = manifest.sections.get("engine")
    if as_json:
        print_json({"bundle": str(path), "target": profile.name, "task": task,
                    "graphs": {k: {key: v[key] for key in ("file", "batch", "opset", "bytes", "cleanup")}
                               for k, v in manifest.graphs.items()},
                    "validation": manifest.sections["validation"], "engine": engine,
                    "seconds": manifest.sections["export"]["seconds"]})
        return
    if engine:
        console.print(f"[bold]Next, on the device:[/bold] TensorRT engines are built on the {profile.name} itself "
                      f"(engines are specific to the GPU and TensorRT version; NVIDIA does not support building "
                      f"Jetson engines on an x86 host). Copy {path} to the device and run "
                      f"`trm-edge build-engine {path}`.")


def _bundle_bytes(checkpoint: Path, info: dict, graph: str) -> int:
    """At least what the bundle will take: each graph holds the model's weights once, in float32 as the checkpoint
    does, less the puzzle-embedding table, which is stored beside them (and may be cut down by --puzzles)."""
    from trm_edge.trm.checkpoint import WEIGHTS_FILE

    config = info["model"]
    table = 4 * int(config.get("num_puzzle_identifiers") or 0) * int(config.get("puzzle_emb_ndim") or 0)
    weights = max(0, (checkpoint / WEIGHTS_FILE).stat().st_size - table)
    return weights * (2 if graph == "unrolled" else 1)


def _printer(out):
    def log(line: str) -> None:
        style = "green" if "✓" in line else "red" if "✗" in line else None
        out.print(line, style=style, markup=False, highlight=False)

    return log


def targets(
    name: str = typer.Argument(None, help="Show one target in full."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List device targets (profiles: runtimes, opset, ops, precisions, INT8 format, memory budget)."""
    from trm_edge.targets import get_target, list_targets

    if name is not None:
        profile = get_target(name)
        if as_json:
            print_json(profile.to_dict())
            return
        from rich.table import Table

        table = Table(title=f"target {profile.name}", show_header=False)
        for key, value in profile.to_dict().items():
            if key == "speed" and value:
                ranked = sorted(value["relative"].items(), key=lambda item: -item[1])
                value = ", ".join(f"{k} {v:.2f}x" for k, v in ranked) + f"\n({value['how']})"
            elif isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, list):
                value = "\n".join(value) if key == "notes" else ", ".join(str(v) for v in value)
            table.add_row(key, "" if value is None else str(value))
        console.print(table)
        return
    profiles = list_targets()
    machine = _this_machine(profiles)
    if as_json:
        print_json({"targets": [p.to_dict() for p in profiles], "this_machine": machine})
        return
    from rich import box
    from rich.table import Table

    # Five columns fit 80: opset, op list and the measured fastest runtime are in `trm-edge targets NAME`.
    table = Table(title="trm-edge targets (opset, ops, speed: trm-edge targets NAME)", box=box.SIMPLE_HEAD)
    for column in ("name", "runtimes", "precisions", "int8", "memory"):
        table.add_column(column, no_wrap=column != "runtimes")
    for p in profiles:
        int8 = f"{'s8' if p.int8.activations == 'int8' else 'u8'}xs8 {p.int8.format}" if p.int8 else "-"
        table.add_row(p.name, "\n".join(p.runtimes), " ".join(p.precisions), int8,
                      f"{p.memory_budget_mb} MB" if p.memory_budget_mb else "-")
    console.print(table)
    console.print(f"this machine: {machine['cpu']}; int8/bf16 matrix instructions: "
                  f"{', '.join(machine['features']) or 'none'}; CPU targets it runs: "
                  f"{', '.join(machine['cpu_targets']) or 'none'}", markup=False, highlight=False)


def _this_machine(profiles: list) -> dict:
    """This CPU, its int8/bf16 matrix instructions, and the CPU targets whose required features it has."""
    from trm_edge.machine import cpu_features, cpu_flags, cpu_name

    flags = cpu_flags()
    return {"cpu": cpu_name(), "features": cpu_features(),
            "cpu_targets": [p.name for p in profiles if p.family == "cpu" and set(p.cpu_features) <= flags]}
