"""How big a full-size ARC bundle is, and what a device pays to solve one task with it: a random-weight
`arc-agi-1` model with a puzzle-embedding table of ROWS identifiers (TASKS tasks x their augmented versions),
exported with the whole float32 table, the whole table in float16, and only the solved tasks' rows (`--tasks`) in
float16. For each: bundle bytes, table bytes, and the peak RSS of `trm-edge solve TASK.json` on the device side
(onnxruntime), with the attempts compared to the float32 bundle's (random weights suffice for identity of answers).
Then `trm-edge eval` of each bundle on the test split of an ARC dataset in the official builder's layout
(tests/puzzles/oracle.write_official_arc_dataset: EVAL_TASKS random tasks, each with its augmented versions, whose
names are rows of the full table): ARC/pass@2 and the submission must equal the float32 bundle's.

    .venv/bin/python benchmarks/arc_bundle_size.py [--tasks 400] [--versions 1000] [--out DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import random_trm  # noqa: E402
from tests.puzzles.oracle import write_official_arc_dataset  # noqa: E402
from trm_edge.config import PRESETS  # noqa: E402
from trm_edge.export.exporter import export_bundle  # noqa: E402
from trm_edge.trm.checkpoint import save_checkpoint  # noqa: E402

GRID = [[1, 2, 0], [0, 3, 4], [5, 0, 6]]


def names(tasks: int, versions: int) -> list[str]:
    """Official-style identifier names: the blank, then each task and its augmented versions."""
    rng = np.random.default_rng(0)
    out = ["<blank>"]
    for t in range(tasks):
        out.append(f"task{t:04d}")
        for k in range(1, versions):  # a dihedral transform and a colour permutation (black stays black)
            perm = "0" + "".join(str(c) for c in rng.permutation(np.arange(1, 10)))
            out.append(f"task{t:04d}|||t{k % 8}|||{perm}")
    return out


def official_dataset(directory: Path, tasks: int, augmentations: int) -> list[str]:
    """An ARC test split of TASKS random tasks (two train pairs, one test pair, 3x3 to 6x6 grids) in the official
    layout; its identifier names, the blank first."""
    rng = np.random.default_rng(1)

    def pair() -> dict:
        rows, cols = (int(n) for n in rng.integers(3, 7, size=2))
        grid = rng.integers(0, 10, size=(rows, cols))
        return {"input": grid.tolist(), "output": np.rot90(grid).tolist()}

    raw = {f"eval{t:04d}": {"train": [pair(), pair()], "test": [pair()]} for t in range(tasks)}
    write_official_arc_dataset(directory, raw, set(raw), num_aug=augmentations, seed=2)
    return json.loads((directory / "identifiers.json").read_text())


def cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trm_edge", *arguments], capture_output=True, text=True)


def evaluate(bundle: Path, dataset: Path, steps: int) -> tuple[dict, dict]:
    """`trm-edge eval` on the dataset's test split, every step as the official evaluation runs: the report and the
    submission."""
    submission = bundle / "submission.json"
    result = cli("eval", str(bundle), "--data", str(dataset), "--runtime", "onnxruntime", "--no-halt",
                 "--max-steps", str(steps), "--submission", str(submission), "--json", "--force")
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout), json.loads(submission.read_text())


def solve_rss(bundle: Path, task_file: Path) -> tuple[dict, float, float]:
    """Attempts, peak RSS (MiB) and seconds of `trm-edge solve` in a fresh process."""
    started = time.perf_counter()
    # VmHWM, not ru_maxrss: Linux carries a forked parent's peak across exec into ru_maxrss
    result = subprocess.run([sys.executable, "-c", "import sys, runpy; sys.argv = sys.argv[1:]; "
                             "sys.argv[0] = 'trm-edge'\ntry:\n    runpy.run_module('trm_edge', run_name='__main__')\n"
                             "finally:\n    print([l.split()[1] for l in open('/proc/self/status') "
                             "if l.startswith('VmHWM')][0], file=sys.stderr)",
                             "trm-edge", "solve", str(task_file), "--model", str(bundle), "--runtime", "onnxruntime",
                             "--json", "--augmentations", "8"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout), int(result.stderr.strip().splitlines()[-1]) / 1024, seconds


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--versions", type=int, default=1000, help="augmented versions per task, the original included")
    parser.add_argument("--eval-tasks", type=int, default=3, help="tasks of the official-layout dataset")
    parser.add_argument("--eval-augmentations", type=int, default=7, help="augmented versions per dataset task")
    parser.add_argument("--eval-steps", type=int, default=2, help="supervision steps of the dataset eval")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="arc-bundle-size-"))
    dataset = root / "arc-dataset"
    dataset_names = official_dataset(dataset, args.eval_tasks, args.eval_augmentations)
    identifier_names = dataset_names + names(args.tasks, args.versions)[1:]
    config = PRESETS["arc-agi-1"].model.replace(num_puzzle_identifiers=len(identifier_names))
    model = random_trm(config, 0)  # puzzle rows at the token embeddings' scale, a live halting head
    checkpoint = save_checkpoint(model, root / "ckpt", task="arc", identifiers=identifier_names, force=True)
    task_file = root / "task0000.json"
    task_file.write_text(json.dumps({"train": [{"input": GRID, "output": GRID}], "test": [{"input": GRID}]}))
    rows = []
    kept = ["task0000", *(f"eval{t:04d}" for t in range(args.eval_tasks))]
    for label, puzzles, dtype in (("whole table, float32", None, "float32"), ("whole table, float16", None, "float16"),
                                  ("--tasks solved tasks, float16", kept, "float16")):
        bundle = root / label.split(",")[0].replace(" ", "-").strip("-") / dtype
        started = time.perf_counter()
        export_bundle(model, bundle, target="cpu", task="arc", puzzles=puzzles, table_dtype=dtype, force=True,
                      identifier_names=identifier_names, validation_steps=1)
        exported = time.perf_counter() - started
        attempts, rss, seconds = solve_rss(bundle, task_file)
        report, submission = evaluate(bundle, dataset, args.eval_steps)
        table_rows = np.load(bundle / "puzzle_emb.npy", mmap_mode="r").shape[0]
        rows.append({"bundle": label, "rows": table_rows, "pass@2": report["arc"]["ARC/pass@2"],
                     "bundle_mb": round(size(bundle) / 2**20, 1),
                     "table_mb": round((bundle / "puzzle_emb.npy").stat().st_size / 2**20, 1),
                     "export_s": round(exported, 1), "solve_peak_rss_mb": round(rss), "solve_s": round(seconds, 1),
                     "attempts": attempts, "submission": submission})
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("attempts", "submission")}), flush=True)
    same = all(row["attempts"] == rows[0]["attempts"] for row in rows)
    same_eval = all(row["submission"] == rows[0]["submission"] and row["pass@2"] == rows[0]["pass@2"] for row in rows)
    print(f"# solve attempts identical to the float32 bundle's: {same}; eval of {len(dataset_names) - 1} dataset "
          f"puzzles: pass@2 and submission identical: {same_eval}; checkpoint {size(checkpoint) / 2**20:.0f} MB; "
          f"this process peaked at {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "identical_attempts": same, "identical_eval": same_eval},
                                        indent=2))
    np.testing.assert_equal((same, same_eval), (True, True))


if __name__ == "__main__":
    main()
