"""How big a full-size ARC bundle is, and what a device pays to solve one task with it: a random-weight
`arc-agi-1` model with a puzzle-embedding table of ROWS identifiers (TASKS tasks x their augmented versions),
exported with the whole float32 table, the whole table in float16, and only one task's rows (`--tasks`) in float16.
For each: bundle bytes, table bytes, and the peak RSS of `trm-edge solve TASK.json` on the device side (onnxruntime),
with the attempts compared to the float32 bundle's (random weights suffice for identity of answers).

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
    parser.add_argument("--out", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="arc-bundle-size-"))
    identifier_names = names(args.tasks, args.versions)
    config = PRESETS["arc-agi-1"].model.replace(num_puzzle_identifiers=len(identifier_names))
    model = random_trm(config, 0)  # puzzle rows at the token embeddings' scale, a live halting head
    checkpoint = save_checkpoint(model, root / "ckpt", task="arc", identifiers=identifier_names, force=True)
    task_file = root / "task0000.json"
    task_file.write_text(json.dumps({"train": [{"input": GRID, "output": GRID}], "test": [{"input": GRID}]}))
    rows = []
    for label, puzzles, dtype in (("whole table, float32", None, "float32"), ("whole table, float16", None, "float16"),
                                  ("--tasks one task, float16", ["task0000"], "float16")):
        bundle = root / label.split(",")[0].replace(" ", "-").strip("-") / dtype
        started = time.perf_counter()
        export_bundle(model, bundle, target="cpu", task="arc", puzzles=puzzles, table_dtype=dtype, force=True,
                      identifier_names=identifier_names, validation_steps=1)
        exported = time.perf_counter() - started
        attempts, rss, seconds = solve_rss(bundle, task_file)
        rows.append({"bundle": label, "rows": len(identifier_names) if puzzles is None else args.versions,
                     "bundle_mb": round(size(bundle) / 2**20, 1),
                     "table_mb": round((bundle / "puzzle_emb.npy").stat().st_size / 2**20, 1),
                     "export_s": round(exported, 1), "solve_peak_rss_mb": round(rss), "solve_s": round(seconds, 1),
                     "attempts": attempts})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "attempts"}), flush=True)
    same = all(row["attempts"] == rows[0]["attempts"] for row in rows)
    print(f"# attempts identical to the float32 bundle's: {same}; checkpoint {size(checkpoint) / 2**20:.0f} MB; "
          f"this process peaked at {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "identical_attempts": same}, indent=2))
    np.testing.assert_equal(same, True)


if __name__ == "__main__":
    main()
