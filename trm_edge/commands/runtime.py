"""CLI commands on the device side: solve, eval, bench, compare, verify, build-engine.

Thin: parse, call trm_edge.runtimes, print (rich) or emit ``--json``. Every heavy import (numpy,
onnxruntime, tensorrt, matplotlib; torch only for checkpoints) happens inside the command, so
``trm-edge solve`` on a bundle starts without torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

import typer

from trm_edge.commands.output import console, err_console, print_json, progress
from trm_edge.errors import DatasetError, PuzzleError, TrmEdgeError, choices
from trm_edge.io import write_json_atomic

MODEL_HELP = ("A bundle directory, a checkpoint directory, a training run directory (its model/), or 'default' "
              "(the shipped model; the default).")
RUNTIME_HELP = ("onnxruntime[:cpu|cuda|tensorrt], tensorrt or torch; default: torch for a checkpoint, the "
                "target's first installed runtime for a bundle.")


def register(app: typer.Typer) -> None:
    app.command()(solve)
    app.command("eval")(eval_command)
    app.command()(bench)
    app.command()(compare)
    app.command()(verify)
    app.command("build-engine")(build_engine)


# -- shared ------------------------------------------------------------------------------------------


def _model(model: str | None) -> str:
    if model:
        return model
    from trm_edge.runtimes.base import default_model

    found = default_model()
    if found is None:
        raise TrmEdgeError("no --model given and no default model is shipped in this install; pass a bundle "
                           "(trm-edge export) or a checkpoint directory")
    return found


def _open(model: Any, runtime: str | None, *, threads: int | None = None):
    """A runtime (not loaded) for a model name/path or an opened ModelSource."""
    from trm_edge.runtimes.base import ModelSource, open_runtime, open_source, parse_runtime_spec

    source = model if isinstance(model, ModelSource) else open_source(_model(model))
    options: dict[str, Any] = {}
    if threads:
        name = parse_runtime_spec(runtime)[0] if runtime else None
        if name in (None, "onnxruntime") and source.kind == "bundle":
            options["intra_op_threads"] = threads
        elif (name in (None, "torch") and source.kind == "checkpoint") or name == "openvino":
            options["threads"] = threads
    return open_runtime(source, runtime, **options)


def _every_runtime(models: list[Any]) -> tuple[list[Any], list[str]]:
    """``bench --runtime all``: (model, runtime) pairs for every installed runtime that runs each model (TensorRT
    only where the bundle has an engine built here)."""
    from trm_edge.runtimes.base import RUNTIMES, open_source

    pairs = []
    for model in models:
        source = open_source(_model(model))
        engines = (getattr(source.bundle, "manifest", None) or {}).get("engines") or {}
        for name, entry in RUNTIMES.items():
            if entry.available() and source.kind in entry.runs and (name != "tensorrt" or "tensorrt" in engines):
                pairs.append((source, name))
    return [m for m, _ in pairs], [r for _, r in pairs]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


# -- solve -------------------------------------------------------------------------------------------


def _read_puzzles(puzzles: list[str], file: Path | None, codec, seq_len: int
                  ) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """Parse command-line puzzles and a file: ([(label, tokens)], [(label, error)]).

    In a file, puzzles are separated by blank lines (empty lines for mazes, whose rows of open cells are
    spaces); a block that does not parse as one puzzle is read as one puzzle per line (so a file of
    one-line sudokus works). A puzzle of another size than the model's (``seq_len`` cells) is an error."""
    items: list[tuple[str, str]] = [(f"puzzle {i + 1}", text) for i, text in enumerate(puzzles)]
    if file is not None:
        try:
            text = sys.stdin.read() if str(file) == "-" else file.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise PuzzleError(f"cannot read {str(file)!r}: {error}") from None
        block: list[str] = []
        start = 1
        blocks: list[tuple[int, list[str]]] = []
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.rstrip("\r") if codec.space_is_cell else line.strip():
                if not block:
                    start = line_no
                block.append(line)
            elif block:
                blocks.append((start, block))
                block = []
        if block:
            blocks.append((start, block))
        for start, lines in blocks:
            whole = "\n".join(lines)
            try:
                codec.parse(whole)
                items.append((f"{file}:{start}", whole))
            except PuzzleError:
                if len(lines) == 1:
                    items.append((f"{file}:{start}", whole))
                else:
                    items += [(f"{file}:{start + k}", line) for k, line in enumerate(lines)]
    parsed, errors = [], []
    for label, text in items:
        try:
            tokens = codec.parse(text)
        except PuzzleError as error:
            errors.append((label, " ".join(str(error).split())))
            continue
        if tokens.size != seq_len:
            errors.append((label, f"the puzzle is {_size(tokens.size)}; this model solves {_size(seq_len)}"))
        else:
            parsed.append((label, tokens))
    return parsed, errors


def _size(cells: int) -> str:
    import math

    side = math.isqrt(cells)
    return f"{side}x{side} ({cells} cells)" if side * side == cells else f"{cells} cells"


def solve(
    puzzles: List[str] = typer.Argument(None, help="Puzzles as text (sudoku: 81 characters; '.', '0' or '-' for "
                                        "blanks). A puzzle that begins with '-' goes after '--': "
                                        "trm-edge solve -- -PUZZLE. For an ARC model: task files (one task's "
                                        "JSON, or a *_challenges.json)."),
    file: Path = typer.Option(None, "--file", "-f", help="A file of puzzles (blank-line separated; '-' for stdin)."),
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    runtime: str = typer.Option(None, "--runtime", "-r", help=RUNTIME_HELP),
    max_steps: int = typer.Option(None, "--max-steps", help="Supervision steps at most (default: the model's)."),
    halt: bool = typer.Option(True, "--halt/--no-halt", help="Stop a puzzle when the model says it is solved."),
    threshold: float = typer.Option(None, "--threshold", help="Halt when q_halt_logits > this (default: the "
                                    "model's calibrated threshold, else 0 = sigmoid 0.5)."),
    batch: int = typer.Option(16, "--batch", "-b", help="Puzzles in flight at once."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the runtime."),
    keep_going: bool = typer.Option(False, "--keep-going", help="Solve the good puzzles when some are malformed."),
    task_ids: List[str] = typer.Option(None, "--task", help="ARC: solve only this task of the files (repeatable)."),
    augmentations: int = typer.Option(None, "--augmentations", help="ARC: vote over at most this many versions of "
                                      "each test input (default: every version the model has an embedding for)."),
    submission: Path = typer.Option(None, "--submission", help="ARC: write the ARC Prize submission (two attempts "
                                    "per test input) to this JSON file."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per puzzle on stdout (ARC: the "
                                 "submission object)."),
) -> None:
    """Solve puzzles with a bundle or checkpoint; print the grids, or JSON with --json.

    An ARC model solves tasks: each test input under every augmentation it has a puzzle embedding for,
    predictions mapped back and voted on as the official evaluator does, two attempts per test input."""
    from trm_edge.runtimes.base import open_source
    from trm_edge.runtimes.tasks import get_codec

    if not puzzles and file is None:
        raise PuzzleError("no puzzles: give PUZZLE arguments or --file F")
    source = open_source(_model(model))
    arc_only = {"--task": task_ids, "--augmentations": augmentations, "--submission": submission}
    if source.task == "arc":
        _solve_arc(source, [*(puzzles or []), *([str(file)] if file else [])], task_ids=task_ids or [],
                   augmentations=augmentations, submission=submission, runtime=runtime, threads=threads,
                   solver_options={"batch_size": batch, "max_steps": max_steps, "halt": halt, "threshold": threshold},
                   as_json=as_json)
        return
    if given := [flag for flag, value in arc_only.items() if value]:
        raise PuzzleError(f"{', '.join(given)}: only for ARC models; this model's task is {source.task!r}")
    codec = get_codec(source.task)
    parsed, errors = _read_puzzles(list(puzzles or []), file, codec, source.config.seq_len)
    if errors and not keep_going:
        label, message = errors[0]
        raise PuzzleError(f"{label}: {message}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    for label, message in errors:
        print(f"error: {label}: {message}", file=sys.stderr)
        if as_json:
            print_json({"puzzle": label, "error": message})
    if parsed:
        import numpy as np

        from trm_edge.runtimes.solver import Solver, answers

        rt = _open(source, runtime, threads=threads)
        inputs = np.stack([tokens for _, tokens in parsed])
        with rt, progress(disable=len(parsed) < 32) as bar:
            task = bar.add_task("solving", total=len(parsed))
            out = Solver(rt, batch_size=batch, max_steps=max_steps, halt=halt, threshold=threshold).run(
                inputs, on_progress=lambda k: bar.advance(task, k))
        for (label, tokens), answer in zip(parsed, answers(out, inputs, codec)):  # noqa: B905
            if as_json:
                print_json({"puzzle": label, **answer.to_json()})
            else:
                _print_answer(label, codec, tokens, answer)
    if errors:
        raise typer.Exit(2)


def _solve_arc(source, paths: list[str], *, task_ids: list[str], augmentations: int | None, submission: Path | None,
               runtime: str | None, threads: int | None, solver_options: dict[str, Any], as_json: bool) -> None:
    from trm_edge.puzzles import arc
    from trm_edge.runtimes.arc_solve import TaskEmbeddings, plan_tasks, solve_plans
    from trm_edge.runtimes.solver import Solver

    if augmentations is not None and augmentations < 1:
        raise PuzzleError(f"--augmentations {augmentations} must be at least 1")
    tasks: dict[str, arc.ArcTask] = {}
    for path in paths:
        tasks.update(arc.load_tasks(path))
    if task_ids:
        if missing := [t for t in task_ids if t not in tasks]:
            raise PuzzleError(f"task {missing[0]!r} is not in {', '.join(paths)} ({len(tasks)} task(s): "
                              f"{choices(sorted(tasks)[:8])})")
        tasks = {t: tasks[t] for t in dict.fromkeys(task_ids)}
    rt = _open(source, runtime, threads=threads)
    embeddings = TaskEmbeddings.of(rt)
    plans = plan_tasks(embeddings, list(tasks.values()), augmentations)
    solver = Solver(rt, **solver_options)
    with rt, progress(disable=as_json and not sys.stderr.isatty()) as bar:
        task = bar.add_task("solving", total=sum(len(plan.identifiers) for plan in plans))
        attempts = solve_plans(solver, embeddings, plans, on_progress=lambda k: bar.advance(task, k))
    if submission is not None:
        write_json_atomic(submission, attempts)
    if as_json:
        print_json(attempts)
        return
    for plan in plans:
        for i, (example, entry) in enumerate(zip(plan.task.test, attempts[plan.task.name])):  # noqa: B905
            _print_grids(f"{plan.task.name} test {i} ({len(plan.identifiers) // len(plan.task.test)} versions voted)",
                         {"input": example.input, **entry})
    if submission is not None:
        console.print(f"wrote {submission}")


def _print_grids(title: str, grids: dict[str, Any]) -> None:
    import numpy as np
    from rich.table import Table

    from trm_edge.puzzles import arc

    table = Table(title=title, title_justify="left")
    for name in grids:
        table.add_column(name.replace("_", " "))
    table.add_row(*(arc.format_grid(np.asarray(grid, dtype=np.uint8)) for grid in grids.values()))
    console.print(table)


def _print_answer(label: str, codec, tokens, answer) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=label, show_lines=False, title_justify="left")
    table.add_column("puzzle")
    table.add_column("answer")
    table.add_row(codec.render(tokens), codec.render(answer.tokens))
    mark = "[green]valid ✓[/]" if answer.valid else "[red]not valid ✗[/]"
    stop = "halted" if answer.halted else "max steps"
    console.print(table)
    console.print(f"{mark}  steps {answer.steps} ({stop})  confidence {answer.confidence:.3f}")
    if answer.problem:
        console.print(f"why: {escape(answer.problem)}")
    console.print(answer.solution, markup=False, highlight=False, soft_wrap=True)


# -- eval --------------------------------------------------------------------------------------------


def eval_command(
    model: str = typer.Argument(None, help=MODEL_HELP),
    data: Path = typer.Option(..., "--data", help="Dataset directory in the official layout."),
    split: str = typer.Option("test", "--split", help="train or test."),
    runtime: str = typer.Option(None, "--runtime", "-r", help=RUNTIME_HELP),
    max_steps: int = typer.Option(None, "--max-steps", help="Supervision steps (default: the model's)."),
    halt: bool = typer.Option(False, "--halt/--no-halt", help="Early exit (default: all steps, as the official "
                                                               "evaluation)."),
    threshold: float = typer.Option(None, "--threshold", help="Halt when q_halt_logits > this (default: the "
                                    "model's calibrated threshold, else 0)."),
    batch: int = typer.Option(64, "--batch", "-b", help="Puzzles in flight at once."),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first N examples only."),
    by_step: bool = typer.Option(False, "--by-step", help="Also report exact accuracy after each step."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the runtime."),
    save_preds: Path = typer.Option(None, "--save-preds", help="Write predicted tokens [N, seq_len] to an .npy."),
    submission: Path = typer.Option(None, "--submission", help="ARC test split: write the ARC Prize submission "
                                    "(two attempts per test input, from the vote) to this JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Accuracy of a model on a dataset split: exact and cell accuracy, mean steps, halting statistics. On an ARC
    test split also the official metric: votes over each test input's augmented versions, pass@1, pass@2 (the
    ARC Prize score) and the evaluator's other pass@K, averaged over tasks."""
    import numpy as np

    from trm_edge.runtimes.evaluate import arc_scores, evaluate, is_arc_dataset, read_examples
    from trm_edge.runtimes.solver import Solver
    from trm_edge.runtimes.tasks import get_codec

    arc = split == "test" and is_arc_dataset(data)
    if submission is not None and not arc:
        raise DatasetError(f"--submission needs the test split of an ARC dataset; {str(data)!r} ({split}) is not one")

    rt = _open(model, runtime, threads=threads)
    examples = read_examples(str(data), split, config=rt.config).head(limit)
    try:
        codec = get_codec(rt.task)
    except PuzzleError:
        codec = None
    solver = Solver(rt, batch_size=batch, max_steps=max_steps, halt=halt, threshold=threshold)
    with rt, progress(disable=as_json and not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"eval {split}", total=len(examples))
        report, out = evaluate(rt, examples, solver=solver, codec=codec, by_step=by_step,
                               on_progress=lambda k: bar.advance(task, k))
    report.update(data=str(data), split=split)
    if arc:
        report["arc"], attempts = arc_scores(data, examples, out)
        if submission is not None:
            write_json_atomic(submission, attempts)
            report["submission_file"] = str(submission)
    if save_preds is not None:
        np.save(save_preds, out.preds)
        report["preds_file"] = str(save_preds)
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"eval {data} ({split}) on {report['runtime']['runtime']}", show_header=False)
    for key in ("count", "exact_accuracy", "cell_accuracy", "valid_fraction", "mean_steps", "max_steps", "halt"):
        if key in report:
            table.add_row(key, _fmt(report[key]))
    for key, value in report["halting"].items():
        table.add_row(f"halting.{key}", _fmt(value) if not isinstance(value, list) else str(value))
    table.add_row("puzzles_per_s", _fmt(report["puzzles_per_s"], 3))
    if "exact_accuracy_by_step" in report:
        table.add_row("exact_accuracy_by_step", " ".join(f"{v:.3f}" for v in report["exact_accuracy_by_step"]))
    for key, value in report.get("arc", {}).items():
        table.add_row(f"arc.{key}", _fmt(value) if not isinstance(value, list) else str(len(value)))
    console.print(table)


# -- bench -------------------------------------------------------------------------------------------


def bench(
    models: List[str] = typer.Argument(None, help=MODEL_HELP + " Several are timed side by side (their runs "
                                       "interleaved) and compared with the first.", show_default=False),
    runtime: List[str] = typer.Option(None, "--runtime", "-r", help=RUNTIME_HELP + " Once for all models, or "
                                      "once per model in order; `all`: every installed runtime that runs them."),
    batch: List[int] = typer.Option([1, 16], "--batch", "-b", help="Batch size(s); repeat for several."),
    max_steps: int = typer.Option(None, "--max-steps", help="Supervision steps (default: all of the model's)."),
    halt: bool = typer.Option(False, "--halt/--no-halt", help="Early exit (default: run every step)."),
    data: Path = typer.Option(None, "--data", help="Take puzzles from this dataset (default: random tokens)."),
    split: str = typer.Option("test", "--split"),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per batch size (and model)."),
    warmup: int = typer.Option(1, "--warmup", help="Untimed runs first."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for the runtime."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of latency and throughput vs batch."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Latency and throughput: per-step and per-puzzle p50/p95, puzzles/s, GFLOP/s, peak memory.

    With several models (say a float and an INT8 bundle), each round runs every model once, so that load from
    elsewhere hits all alike, and puzzles/s is reported as a ratio to the first model.
    """
    import contextlib
    import time

    from trm_edge.runtimes.evaluate import bench_side_by_side, random_inputs, read_examples

    if any(b < 1 for b in batch) or repeats < 1 or warmup < 0:
        raise TrmEdgeError("--batch and --repeats must be at least 1, --warmup at least 0")
    if plot is not None:
        import matplotlib  # noqa: F401 (not in a device-only install: fail before the runs, not after them)
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
    rts = [_open(m, r, threads=threads) for m, r in zip(models, runtimes)]  # noqa: B905
    if len({rt.config.seq_len for rt in rts}) > 1:
        raise TrmEdgeError("the models to compare take puzzles of different lengths: "
                           f"{', '.join(f'{rt.source.path}: {rt.config.seq_len}' for rt in rts)}")
    ids = None
    if data is not None:
        examples = read_examples(str(data), split, config=rts[0].config)
        inputs, ids = examples.inputs, examples.puzzle_identifiers
    else:
        inputs = random_inputs(rts[0].config, max(batch))
    entries = []
    with contextlib.ExitStack() as stack, progress(disable=as_json and not sys.stderr.isatty()) as bar:
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
                entry["results"].append(row)
        for entry, rt in zip(entries, rts):  # noqa: B905
            entry["runtime"] = rt.describe()
    for entry in entries:
        for row, base in zip(entry["results"], entries[0]["results"]):  # noqa: B905
            row["speedup"] = row["puzzles_per_s"] / base["puzzles_per_s"]
    report = {"data": str(data) if data else "random", "baseline": entries[0]["model"], "models": entries}
    if every:
        report["ranking"] = _ranking(entries, batch)
    if plot is not None:
        _plot_bench(entries, plot)
        report["plot"] = str(plot)
    if as_json:
        print_json(report)
        return
    from rich import box
    from rich.table import Table

    table = Table(title=f"bench, {report['data']} puzzles (medians; p95 and peak memory in --json)",
                  caption="speedup: puzzles/s over the first model's", box=box.SIMPLE_HEAD, pad_edge=False)
    labels = [_label(e).replace(" (", "\n(") for e in entries]
    table.add_column("model", overflow="fold", min_width=min(max(len(w) for label in labels
                                                                 for w in label.split("\n")), 24))
    for col in ("batch", "steps", "ms/step", "puzzles/s", "speedup", "GFLOP/s"):
        table.add_column(col, justify="right")
    for entry, label in zip(entries, labels):  # noqa: B905
        for r in entry["results"]:
            table.add_row(label, str(r["batch"]), f"{r['mean_steps']:.1f}", f"{r['step_ms_p50']:.1f}",
                          f"{r['puzzles_per_s']:.2f}", f"{r['speedup']:.2f}x",
                          f"{r['gflops']:.1f}" if r["gflops"] else "-")
    console.print(table)
    loads = ", ".join(f"{_label(e)} {e['load_s']:.2f} s" for e in entries)
    console.print(f"load: {loads}")
    for b, ranked in (report.get("ranking") or {}).items():
        order = " > ".join(f"{r['label']} {r['puzzles_per_s']:.2f}/s" for r in ranked if r["parity"] is not False)
        failed = [r["label"] for r in ranked if r["parity"] is False]
        console.print(f"fastest at batch {b}: {order}" + (f" (failed parity, not ranked: {', '.join(failed)})"
                                                            if failed else ""), markup=False, highlight=False)


def _parity(rt) -> dict[str, Any] | None:
    """``verify`` on the bundle's golden I/O through this runtime (None for a checkpoint or a bundle without)."""
    from trm_edge.runtimes.evaluate import verify_golden

    golden = rt.source.bundle.golden() if rt.source.kind == "bundle" and rt.source.bundle.manifest.get("golden") \
        else None
    if not golden:
        return None
    report = verify_golden(rt, golden, precision=rt.source.precision)
    return {"ok": report["ok"], "worst_error_ratio": report["worst"]["error_ratio"], "reference": report["reference"]}


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


def _plot_bench(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for entry in entries:
        label = _label(entry)
        batches = [r["batch"] for r in entry["results"]]
        (line,) = left.plot(batches, [r["puzzle_s_p50"] for r in entry["results"]], "o-", label=f"{label} p50")
        left.plot(batches, [r["puzzle_s_p95"] for r in entry["results"]], "o--", color=line.get_color(),
                  label=f"{label} p95")
        right.plot(batches, [r["puzzles_per_s"] for r in entry["results"]], "o-", label=label)
    left.set(xlabel="batch", ylabel="puzzle latency (s)", xscale="log", title="latency")
    left.legend(fontsize="small")
    right.set(xlabel="batch", ylabel="puzzles / s", xscale="log", title="throughput")
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- compare -----------------------------------------------------------------------------------------


def compare(
    model_a: str = typer.Argument(..., help="Reference: bundle or checkpoint."),
    model_b: str = typer.Argument(None, help="Candidate: bundle or checkpoint (default: A itself, on --runtime-b)."),
    data: Path = typer.Option(..., "--data", help="Dataset directory in the official layout."),
    split: str = typer.Option("test", "--split"),
    runtime_a: str = typer.Option(None, "--runtime-a", help=RUNTIME_HELP),
    runtime_b: str = typer.Option(None, "--runtime-b", help=RUNTIME_HELP),
    limit: int = typer.Option(64, "--limit", help="Puzzles to compare."),
    max_steps: int = typer.Option(None, "--max-steps", help="Supervision steps (default: the model's)."),
    halt: bool = typer.Option(False, "--halt/--no-halt", help="Free-running comparison with early exit."),
    batch: int = typer.Option(16, "--batch", "-b"),
    teacher_limit: int = typer.Option(None, "--teacher-forced-limit", help="Teacher-force only the first N of the "
                                      "puzzles (it runs both models twice per step; default: all, 0: none)."),
    plot: Path = typer.Option(None, "--plot", help="Write a PNG of divergence vs supervision step."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Parity between two models/bundles/runtimes: teacher-forced per-step divergence, answers, halting."""
    from trm_edge.runtimes.evaluate import free_running, read_examples, teacher_forced
    from trm_edge.runtimes.solver import Solver

    a = _open(model_a, runtime_a)
    b = _open(model_b or model_a, runtime_b)
    examples = read_examples(str(data), split, config=a.config).head(limit)
    steps = max_steps or a.config.halt_max_steps
    if teacher_limit is not None and teacher_limit < 0:
        raise TrmEdgeError(f"--teacher-forced-limit {teacher_limit} must be at least 0")
    forced = examples.head(teacher_limit)
    if plot is not None and not len(forced):
        raise TrmEdgeError("--plot draws the teacher-forced divergence: give --teacher-forced-limit above 0")
    if plot is not None:
        import matplotlib  # noqa: F401 (not in a device-only install: fail before the runs, not after them)
    with a, b, progress(disable=as_json and not sys.stderr.isatty()) as bar:
        task = bar.add_task("teacher-forced", total=len(forced) * steps)
        per_step = teacher_forced(a, b, forced, steps=steps, batch_size=batch,
                                  on_step=lambda k: bar.advance(task, k)) if len(forced) else []
        runs = []
        for rt in (a, b):  # each halts at its own calibrated threshold (the Solver's default)
            solver = Solver(rt, batch_size=batch, max_steps=steps, halt=halt)
            runs.append(solver.run(examples.inputs, examples.puzzle_identifiers))
        answers_report = free_running(runs[0], runs[1], examples)
        report = {"a": a.describe(), "b": b.describe(), "count": len(examples), "steps": steps, "halt": halt,
                  "teacher_forced_count": len(forced), "teacher_forced": per_step, "free_running": answers_report}
    if plot is not None:
        _plot_compare(per_step, plot, title=f"{a.name} vs {b.name}")
        report["plot"] = str(plot)
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table(title=f"teacher-forced: A={a.name} ({a.source.path}) vs B={b.name} ({b.source.path})")
    for col in ("step", "logits max abs", "max rel", "mean abs", "argmax agree", "q_halt max abs", "halt agree"):
        table.add_column(col, justify="right")
    for r in per_step:
        table.add_row(str(r["step"]), f"{r['logits_max_abs']:.2e}", f"{r['logits_max_rel']:.2e}",
                      f"{r['logits_mean_abs']:.2e}", f"{r['argmax_agreement']:.4f}", f"{r['q_halt_max_abs']:.2e}",
                      f"{r['halt_agreement']:.4f}")
    if per_step:
        console.print(table)
    summary = Table(title="free-running answers", show_header=False)
    for key, value in answers_report.items():
        summary.add_row(key, ", ".join(_fmt(v) for v in value) if isinstance(value, list) else _fmt(value))
    console.print(summary)


def _plot_compare(per_step: list[dict[str, Any]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in per_step]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.semilogy(steps, [max(r["logits_max_abs"], 1e-12) for r in per_step], "o-", label="max abs")
    left.semilogy(steps, [max(r["logits_mean_abs"], 1e-12) for r in per_step], "o--", label="mean abs")
    left.set(xlabel="supervision step", ylabel="logits difference", title="teacher-forced divergence")
    left.legend()
    right.plot(steps, [1 - r["argmax_agreement"] for r in per_step], "o-", label="cells")
    right.plot(steps, [1 - r["halt_agreement"] for r in per_step], "o--", label="halt decisions")
    right.set(xlabel="supervision step", ylabel="disagreement", title="argmax / halting")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- verify ------------------------------------------------------------------------------------------


def verify(
    bundle: Path = typer.Argument(..., help="Bundle directory."),
    runtime: str = typer.Option(None, "--runtime", "-r", help=RUNTIME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """On-device parity: checksums, then the bundle's golden I/O through the runtime; pass/fail."""
    from trm_edge.errors import BundleError
    from trm_edge.runtimes.base import open_runtime, open_source
    from trm_edge.runtimes.evaluate import raise_if_failed, verify_golden

    source = open_source(bundle)  # verifies every checksum
    if source.kind != "bundle":
        raise BundleError(f"{str(bundle)!r} is not a bundle (no manifest.json)")
    golden = source.bundle.golden()
    if not golden:
        raise BundleError(f"{str(bundle)!r} carries no golden I/O to verify against")
    with open_runtime(source, runtime) as rt:
        report = verify_golden(rt, golden, precision=source.precision)
    report["bundle"] = str(bundle)
    report["checksums"] = "ok"
    if as_json:
        print_json(report)
    else:
        console.print(f"checksums ✓ ({bundle})")
        for line in report["lines"]:
            console.print(line, markup=False, highlight=False)
        worst = report["worst"]
        verdict = "[green]PASS[/]" if report["ok"] else "[red]FAIL[/]"
        console.print(f"{verdict} on {rt.name}: {report['cases']} golden cases, worst {worst['output']} "
                      f"err/tol {worst['error_ratio']:.3f} at {worst['case']}")
    raise_if_failed(report, what=f"{bundle} on {rt.name}")


# -- build-engine ------------------------------------------------------------------------------------


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
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
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
            print_json({k: str(v) if isinstance(v, Path) else v for k, v in asdict(plan).items()})
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
