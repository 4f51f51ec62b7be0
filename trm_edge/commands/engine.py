"""CLI command: build-engine (the TensorRT engine of a bundle, built on the GPU that will run it)."""

from __future__ import annotations

from pathlib import Path

import typer

from trm_edge.commands import common
from trm_edge.commands.output import console, print_json
from trm_edge.errors import TrmEdgeError
from trm_edge.progress import err_console


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command("build-engine")(build_engine)


def build_engine(
    bundle: Path = typer.Argument(..., help="Bundle directory (on the device that will run it)."),
    fp16: bool = typer.Option(False, "--fp16", help="Let TensorRT run layers in FP16."),
    int8: bool = typer.Option(False, "--int8", help="INT8 from the bundle's Q/DQ nodes (an INT8 bundle)."),
    timing_cache: Path = typer.Option(None, "--timing-cache", help="Read and update this timing cache file."),
    max_batch: int = typer.Option(16, "--max-batch", help="Largest batch the engine accepts."),
    opt_batch: int = typer.Option(None, "--opt-batch", help="Batch TensorRT tunes for (default: --max-batch)."),
    workspace: int = typer.Option(None, "--workspace",
                                  help="Builder workspace limit in MiB (default: half the target's memory budget)."),
    dla_core: int = typer.Option(None, "--dla-core",
                                 help="Run on this DLA core (Orin AGX/NX, Xavier), GPU fallback for the rest; "
                                      "needs a static-batch bundle (export --batch N) and --fp16 or --int8."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the trtexec line; build nothing."),
    as_json: bool = common.json_option(),
) -> None:
    """Build the TensorRT engine of a bundle on this GPU and record it (GPU, compute capability, SMs, memory,
    TensorRT version, power mode) in the manifest; prints the equivalent trtexec command. The precision
    defaults to the bundle's (fp32, fp16 or int8); in FP16 and INT8 engines every RMSNorm stays float32."""
    from dataclasses import asdict

    from trm_edge.runtimes.trt_build import build_engine as build
    from trm_edge.runtimes.trt_build import plan_build

    if fp16 and int8:
        raise TrmEdgeError("give --fp16 or --int8, not both (--int8 already lets other layers run in FP16)")
    precision = "int8" if int8 else "fp16" if fp16 else None
    plan = plan_build(bundle, precision=precision, max_batch=max_batch, opt_batch=opt_batch,
                      timing_cache=timing_cache, workspace_mb=workspace, dla_core=dla_core)
    if dry_run:
        if as_json:
            print_json({k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items() if k != "graph"})
        else:
            where = f" on DLA core {plan.dla_core}" if plan.dla_core is not None else ""
            console.print(f"would build a {plan.precision} engine{where}, batch {plan.min_batch}..{plan.max_batch} "
                          f"(opt {plan.opt_batch}), {len(plan.fp32_layers)} RMSNorm layers kept float32 -> "
                          f"{plan.engine}")
            console.print("equivalent trtexec command:")
            console.print(plan.trtexec, markup=False, highlight=False, soft_wrap=True)
        return
    record = build(plan, log=(lambda m: err_console.print(m)) if as_json else console.print)
    if as_json:
        print_json(asdict(record))
        return
    console.print(f"[green]✓[/] engine {bundle / record.file}: {record.precision}, {record.device.describe()}")
    console.print("equivalent trtexec command:")
    console.print(record.trtexec, markup=False, highlight=False, soft_wrap=True)
