"""CLI command: bench (latency and throughput of one or several models/runtimes, side by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import typer

from trm_edge.commands import common
from trm_edge.commands.output import console, print_json
from trm_edge.errors import TrmEdgeError
from trm_edge.machine import describe, this_machine, usable_cores
from trm_edge.progress import progress


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command()(bench)


def bench(
    models: List[str] = typer.Argument(None, help=common.MODEL_HELP + " Several are timed side by side (their runs "
                                       "interleaved) and compared with the first.", show_default=False),
    runtime: List[str] = common.runtime_option(extra="Once for all models, or once per model in order; `all`: "
                                                     "every installed runtime that runs them."),
    batch: List[int] = typer.Option([1, 16], "--batch", "-b", help="Batch size(s); repeat for several."),
    max_steps: int = common.max_steps_option(),
    halt: bool = common.halt_option(),
    data: Path = typer.Option(None, "--data", help="Take puzzles from this dataset (default: random tokens)."),
    split: str = typer.Option("test", "--split"),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per batch size (and model)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed runs first."),
    threads: int = common.threads_option(),
    limit: bool = typer.Option(True, "--limit/--no-limit", help="Also time the model's own GEMMs alone, in its "
                               "precision, on every installed CPU runtime (once per machine: cached), and print the "
                               "step's percentage of that limit (a GPU module: its published dense rate)."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of latency and throughput vs batch."),
    as_json: bool = common.json_option(),
    force: bool = common.force_option("Replace an existing --plot file."),
) -> None:
    """Latency and throughput: per-step and per-puzzle p50/p95, puzzles/s, GFLOP/s, peak memory, and how close
    a full step comes to this machine's limit for the model (% limit: its GEMMs timed alone, all else free).

    With several models (say a float and an INT8 bundle), each round runs every model once, so that load from
    elsewhere hits all alike, and puzzles/s is reported as a ratio to the first model. Puzzles halt as in solve
    (each model at its calibrated threshold); --no-halt times every step up to --max-steps.
    """
    import contextlib
    import time

    from trm_edge.puzzles.examples import random_inputs, read_examples
    from trm_edge.runtimes.bench import bench_side_by_side

    if any(b < 1 for b in batch) or repeats < 1 or warmup < 0:
        raise TrmEdgeError("--batch and --repeats must be at least 1, --warmup at least 0")
    if plot is not None:
        from trm_edge.commands.plots import require_matplotlib

        require_matplotlib()
        common.check_outputs(plot, force=force)
    models = list(models or [None])
    runtimes = list(runtime or [None])
    every = runtimes == ["all"]
    if every:  # every installed runtime that can run each model, side by side
        models, runtimes = _every_runtime(models)
    if len(runtimes) == 1:
        runtimes *= len(models)
    if len(runtimes) != len(models):
        raise TrmEdgeError(f"--runtime is given {len(runtimes)} times for {len(models)} models: give it once for "
                           "all, or once per model")
    rts = [common.open_model(m, r, threads=threads) for m, r in zip(models, runtimes)]  # noqa: B905
    if len({rt.config.seq_len for rt in rts}) > 1:
        raise TrmEdgeError("the models to compare take puzzles of different lengths: "
                           f"{', '.join(f'{rt.source.path}: {rt.config.seq_len}' for rt in rts)}")
    ids = None
    if data is not None:
        examples = read_examples(str(data), split, config=rts[0].config, task=rts[0].task)
        inputs, ids = examples.inputs, examples.puzzle_identifiers
    else:
        inputs = random_inputs(rts[0].config, max(batch))
    entries = []
    with contextlib.ExitStack() as stack, progress() as bar:
        for rt in rts:
            start = time.perf_counter()
            stack.enter_context(rt)  # loads it
            entries.append({"model": str(rt.source.path), "load_s": time.perf_counter() - start, "results": []})
            if every:
                entries[-1]["parity"] = _parity(rt)
        task = bar.add_task("bench", total=len(batch) * (repeats + warmup) * len(rts))
        for b in batch:
            rows = bench_side_by_side(rts, inputs, batch_size=b, max_steps=max_steps, halt=halt, repeats=repeats,
                                      warmup=warmup, puzzle_identifiers=ids, on_run=lambda: bar.advance(task))
            for entry, row in zip(entries, rows):  # noqa: B905
                entry["results"].append(row.to_dict())
        for entry, rt in zip(entries, rts):  # noqa: B905
            entry["runtime"] = rt.describe()
    for entry in entries:
        for row, base in zip(entry["results"], entries[0]["results"]):  # noqa: B905
            row["speedup"] = row["puzzles_per_s"] / base["puzzles_per_s"]
    if limit:
        for entry, rt in zip(entries, rts):  # noqa: B905
            _add_limits(entry, rt, threads)
    report = {"machine": this_machine(threads or usable_cores()), "data": str(data) if data else "random",
              "baseline": entries[0]["model"], "models": entries}
    if every:
        report["ranking"] = _ranking(entries, batch)
    if plot is not None:
        from trm_edge.commands.plots import bench_plot

        bench_plot(entries, [_label(e) for e in entries], plot)
        report["plot"] = str(plot)
    if as_json:
        print_json(report)
        return
    _print_report(report)


def _add_limits(entry: dict[str, Any], rt: Any, threads: int | None) -> None:
    """Each result's ``limit`` (the step at this machine's limit, runtimes/ceiling.py) and ``percent_of_limit``
    (of its full steps' median; None where it had none, or no limit could be had)."""
    from trm_edge.runtimes.ceiling import step_limit

    for row in entry["results"]:
        found = step_limit(rt, row["batch"], threads=threads or rt.threads or usable_cores())
        row["limit"] = None if found is None else found.to_dict()
        step = row["full_step_ms_p50"]
        row["percent_of_limit"] = None if found is None or not step else found.percent(step)


def _print_report(report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    entries = report["models"]
    table = Table(title=f"bench, {report['data']} puzzles (medians; p95 and peak memory in --json)",
                  caption="speedup: puzzles/s over the first model's", box=box.SIMPLE_HEAD, pad_edge=False)
    labels = [_label(e).replace(" (", "\n(") for e in entries]
    table.add_column("model", overflow="fold", min_width=min(max(len(w) for label in labels
                                                                 for w in label.split("\n")), 24))
    limits = any("limit" in r for e in entries for r in e["results"])
    for col in ("batch", "steps", "ms/step", "puzzles/s", "speedup", "GFLOP/s", *(["% limit"] * limits)):
        table.add_column(col, justify="right")
    for entry, label in zip(entries, labels):  # noqa: B905
        for r in entry["results"]:
            cells = [label, str(r["batch"]), f"{r['mean_steps']:.1f}", f"{r['step_ms_p50']:.1f}",
                     f"{r['puzzles_per_s']:.2f}", f"{r['speedup']:.2f}x", f"{r['gflops']:.1f}" if r["gflops"] else "-"]
            if limits:
                cells.append(f"{r['percent_of_limit']:.0f}%" if r.get("percent_of_limit") else "-")
            table.add_row(*cells)
    console.print(describe(report["machine"]), markup=False, highlight=False)
    console.print(table)
    if limits:
        console.print("% limit: the step's GEMMs timed alone in the model's precision on the fastest installed "
                      "runtime for each (all else free), over the median step with the whole batch in flight; the "
                      "limit in ms and per GEMM: --json", markup=False, highlight=False)
    loads = ", ".join(f"{_label(e)} {e['load_s']:.2f} s" for e in entries)
    console.print(f"load: {loads}")
    for b, ranked in (report.get("ranking") or {}).items():
        order = " > ".join(f"{r['label']} {r['puzzles_per_s']:.2f}/s" for r in ranked if r["parity"] is not False)
        failed = [r["label"] for r in ranked if r["parity"] is False]
        console.print(f"fastest at batch {b}: {order}" + (f" (failed parity, not ranked: {', '.join(failed)})"
                                                            if failed else ""), markup=False, highlight=False)


def _every_runtime(models: list[Any]) -> tuple[list[Any], list[str]]:
    """``bench --runtime all``: (model, runtime) pairs for every installed runtime that runs each model (TensorRT
    only where the bundle has an engine built here)."""
    from trm_edge.runtimes.registry import RUNTIMES
    from trm_edge.runtimes.sources import open_source

    pairs = []
    for model in models:
        source = open_source(common.resolve_model(model))
        engine = source.bundle.manifest.tensorrt_engine if source.bundle is not None else None
        for name, entry in RUNTIMES.items():
            if entry.available() and source.kind in entry.runs and (name != "tensorrt" or engine is not None):
                pairs.append((source, name))
    return [m for m, _ in pairs], [r for _, r in pairs]


def _parity(rt) -> dict[str, Any] | None:
    """``verify`` on the bundle's golden I/O through this runtime (None for a checkpoint or a bundle without)."""
    from trm_edge.runtimes.verify import verify_golden

    bundle = rt.source.bundle if rt.source.kind == "bundle" else None
    golden = bundle.golden() if bundle is not None and bundle.manifest.golden else None
    if not golden:
        return None
    result = verify_golden(rt, golden, precision=rt.source.precision)
    return {"ok": result.ok, "worst_error_ratio": result.worst.ratio, "reference": result.reference}


def _ranking(entries: list[dict[str, Any]], batches: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Per batch size, every (model, runtime) fastest first, with its parity verdict (None: not verifiable)."""
    ranking = {}
    for i, b in enumerate(batches):
        rows = [{"label": f"{_label(e)} {e['runtime'].get('precision', '')}".strip(),
                 "puzzles_per_s": e["results"][i]["puzzles_per_s"],
                 "parity": None if e.get("parity") is None else e["parity"]["ok"]} for e in entries]
        ranking[b] = sorted(rows, key=lambda r: -r["puzzles_per_s"])
    return ranking


def runtime_label(runtime: dict[str, Any]) -> str:
    """A runtime's ``describe()`` as a name: ``onnxruntime``, ``openvino``, ``openvino:bf16`` (an inference-precision
    hint other than float32). benchmarks/runtime_table.py labels its rows with it too."""
    hint = runtime.get("inference_precision")
    return runtime["runtime"] + (f":{hint}" if hint and hint != "f32" else "")


def _label(entry: dict[str, Any]) -> str:
    return f"{Path(entry['model']).name or entry['model']} ({runtime_label(entry['runtime'])})"
