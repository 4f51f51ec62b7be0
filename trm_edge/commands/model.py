"""CLI commands about models: import, init, info."""

from __future__ import annotations

from pathlib import Path

import typer

from trm_edge.commands.output import console, print_json


def register(app: typer.Typer) -> None:
    app.command("import")(import_checkpoint)
    app.command()(init)
    app.command()(info)


def import_checkpoint(
    checkpoint: str = typer.Argument(..., help="Official checkpoint file (step_N) with all_config.yaml beside it, or "
                                     "on the Hugging Face Hub: hf://OWNER/REPO/PATH/step_N (through the Hub's cache; "
                                     "HF_HUB_OFFLINE=1 reads the cache only)."),
    task: str = typer.Option(..., "--task", help="Puzzle task the model was trained on: sudoku, maze or arc."),
    seq_len: int = typer.Option(None, "--seq-len", help="Answer length; defaults to the task's (81 or 900)."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory to write the trm-edge checkpoint to."),
    identifiers: Path = typer.Option(None, "--identifiers", help="The training set's identifiers.json (or its "
                                     "dataset directory): the names of the puzzle identifiers, kept with the "
                                     "checkpoint for ARC solving."),
    revision: str = typer.Option(None, "--revision", help="Hub references: a branch, tag or commit (default: "
                                 "main); pin a commit to import the same weights every time."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
) -> None:
    """Convert an official TRM checkpoint into a trm-edge checkpoint (float32 safetensors)."""
    from trm_edge.errors import CheckpointError
    from trm_edge.io import check_output
    from trm_edge.trm.checkpoint import import_official, read_identifier_names, save_checkpoint
    from trm_edge.trm.hub import fetch_checkpoint, is_hub_reference

    check_output(output, force=force)  # before a download of gigabytes
    if revision is not None and not is_hub_reference(checkpoint):
        raise CheckpointError(f"--revision is for Hub references (hf://...), not the local file {checkpoint!r}")
    local = fetch_checkpoint(checkpoint, revision=revision) if is_hub_reference(checkpoint) else Path(checkpoint)
    names = read_identifier_names(identifiers) if identifiers else None
    model = import_official(local, task=task, seq_len=seq_len)
    save_checkpoint(model, output, task=task, metadata={"imported_from": checkpoint, "revision": revision},
                    identifiers=names, force=force)
    console.print(f"imported {checkpoint} -> {output}")


def init(
    preset: str = typer.Option(..., "--preset", help="Preset to initialise (see `trm-edge info --preset`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory to write the checkpoint to."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation."),
    data: Path = typer.Option(None, "--data", help="Size the model to this dataset, as train does: sequence length, "
                              "vocabulary, and the puzzle identifiers with their names (an ARC model needs them)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output directory."),
) -> None:
    """Write a randomly initialised checkpoint, to try the pipeline before training."""
    from trm_edge.config import get_preset
    from trm_edge.trm.checkpoint import save_checkpoint
    from trm_edge.trm.model import build_model
    from trm_edge.trm.run_config import configs_for_dataset, identifier_names

    chosen = get_preset(preset)
    config, names = chosen.model, None
    if data is not None:
        config = configs_for_dataset(preset, data)[0]
        names = identifier_names(str(data), config)
    save_checkpoint(build_model(config, seed=seed), output, task=chosen.task, identifiers=names,
                    metadata={"preset": preset, "seed": seed, "data_dir": None if data is None else str(data)},
                    force=force)
    console.print(f"wrote randomly initialised {preset} -> {output}")


def info(
    model: str = typer.Argument(None, help="Checkpoint directory, or 'default'."),
    preset: str = typer.Option(None, "--preset", help="Describe a preset instead of a checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Describe a model: config, parameter count, puzzle-embedding size, FLOPs per supervision step; a preset also
    what it is for and its measured training time per step."""
    from trm_edge.config import PRESETS, TRMConfig, flops_per_step, get_preset, parameter_count
    from trm_edge.errors import ConfigError
    from trm_edge.trm.checkpoint import read_checkpoint_info

    if (model is None) == (preset is None):
        raise ConfigError(f"give a MODEL or --preset NAME (presets: {', '.join(PRESETS)})")
    if preset is not None:
        config, task, source = get_preset(preset).model, get_preset(preset).task, f"preset {preset}"
    else:
        details = read_checkpoint_info(model)
        config, task, source = TRMConfig.from_dict(details["model"]), details.get("task"), model
    report = {
        "source": source,
        "task": task,
        "config": config.to_dict(),
        "params": parameter_count(config),
        "puzzle_embedding_params": config.num_puzzle_identifiers * config.puzzle_emb_ndim,
        "applications_per_step": config.applications_per_step,
        "flops_per_step": flops_per_step(config),
        "flops_per_puzzle": flops_per_step(config) * config.halt_max_steps,
    }
    if preset is not None:  # what it is for and how long it trains (measured, benchmarks/preset_speed.py)
        report["description"] = get_preset(preset).description
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"TRM {source}", show_header=False)
    if "description" in report:
        table.add_row("description", report["description"])
    for key in ("task", "params", "puzzle_embedding_params", "applications_per_step"):
        table.add_row(key, f"{report[key]:,}" if isinstance(report[key], int) else str(report[key]))
    table.add_row("GFLOP per supervision step", f"{report['flops_per_step'] / 1e9:.2f}")
    table.add_row(f"GFLOP per puzzle ({config.halt_max_steps} steps)", f"{report['flops_per_puzzle'] / 1e9:.1f}")
    for key, value in config.to_dict().items():
        table.add_row(key, str(value))
    console.print(table)
