"""Independent checkers for tests: a set-based Sudoku solution counter and a maze path counter.

Deliberately written differently from trm_edge.puzzles (no bitmasks, no hidden singles), so a bug in
the production solver is unlikely to be mirrored here.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def count_sudoku_solutions(grid: np.ndarray, limit: int = 2) -> list[np.ndarray]:
    """Up to ``limit`` solutions of a 9x9 grid (0 = blank), by MRV backtracking over sets."""
    cells = [[int(v) for v in row] for row in np.asarray(grid).reshape(9, 9)]
    found: list[np.ndarray] = []

    def options(r: int, c: int) -> set[int]:
        used = set(cells[r]) | {cells[i][c] for i in range(9)}
        br, bc = 3 * (r // 3), 3 * (c // 3)
        used |= {cells[i][j] for i in range(br, br + 3) for j in range(bc, bc + 3)}
        return set(range(1, 10)) - used

    def go() -> None:
        best = None
        for r in range(9):
            for c in range(9):
                if cells[r][c] == 0:
                    opts = options(r, c)
                    if best is None or len(opts) < len(best[2]):
                        best = (r, c, opts)
        if best is None:
            found.append(np.array(cells, dtype=np.uint8))
            return
        r, c, opts = best
        for d in sorted(opts):
            cells[r][c] = d
            go()
            cells[r][c] = 0
            if len(found) >= limit:
                return

    go()
    return found


def maze_shortest_paths(grid: np.ndarray) -> tuple[int, int]:
    """(length in moves, number of shortest paths) from 'S' (3) to 'G' (4) through non-walls (1 = wall)."""
    grid = np.asarray(grid)
    n = grid.shape[0]
    (sr,), (sc,) = np.nonzero(grid == 3)
    (gr,), (gc,) = np.nonzero(grid == 4)
    dist = {(int(sr), int(sc)): 0}
    ways = {(int(sr), int(sc)): 1}
    queue = deque([(int(sr), int(sc))])
    while queue:
        r, c = queue.popleft()
        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if 0 <= nr < n and 0 <= nc < n and grid[nr, nc] != 1:
                if (nr, nc) not in dist:
                    dist[(nr, nc)] = dist[(r, c)] + 1
                    ways[(nr, nc)] = ways[(r, c)]
                    queue.append((nr, nc))
                elif dist[(nr, nc)] == dist[(r, c)] + 1:
                    ways[(nr, nc)] += ways[(r, c)]
    goal = (int(gr), int(gc))
    return (dist[goal], ways[goal]) if goal in dist else (-1, 0)


# ---------------------------------------------------------------------------------------------
# The official ARC evaluator's rules (SamsungSAILMontreal/TinyRecursiveModels: evaluators/arc.py and the
# grid_hash / inverse_aug of dataset/build_arc_dataset.py), restated from their description in plain loops.

_COLOURS = range(2, 12)  # colour c is token c + 2; anything else (PAD 0, EOS 1) ends a row


def official_crop(tokens) -> np.ndarray:
    """Scan rows top-down; a row's width is its run of colour tokens from the left, never wider than the row
    above; the top-left rectangle of largest area wins (ties: the first found)."""
    canvas = np.asarray(tokens).reshape(30, 30)
    best_area, best = 0, (0, 0)
    width = 30
    for r in range(30):
        run = 0
        while run < width and int(canvas[r, run]) in _COLOURS:
            run += 1
        width = run
        if (r + 1) * width > best_area:
            best_area, best = (r + 1) * width, (r + 1, width)
    return (canvas[:best[0], :best[1]] - 2).astype(np.uint8)


def _official_dihedral(grid: np.ndarray, tid: int) -> np.ndarray:
    forward = [lambda g: g, lambda g: np.rot90(g, 1), lambda g: np.rot90(g, 2), lambda g: np.rot90(g, 3),
               np.fliplr, np.flipud, lambda g: g.T, lambda g: np.fliplr(np.rot90(g, 1))]
    return forward[tid](grid)


def official_invert(name: str, grid: np.ndarray) -> tuple[str, np.ndarray]:
    """``task|||tK|||perm``: undo the dihedral transform K (found as the transform that maps K's output of a
    generic grid back to it), then the colour permutation (``perm[c]`` is the new colour of ``c``)."""
    if "|||" not in name:
        return name, grid
    task, tid, perm = name.split("|||")
    probe = np.arange(12).reshape(3, 4)
    undo = next(u for u in range(8)
                if np.array_equal(_official_dihedral(_official_dihedral(probe, int(tid[1:])), u), probe))
    back = {int(new): old for old, new in enumerate(perm)}
    restored = _official_dihedral(grid, undo)
    return task, np.vectorize(back.__getitem__, otypes=[np.uint8])(restored) if restored.size else restored


def official_hash(grid: np.ndarray) -> str:
    import hashlib

    grid = np.asarray(grid, dtype=np.uint8)
    return hashlib.sha256(bytes([grid.shape[0], grid.shape[1]]) + grid.tobytes()).hexdigest()


def official_arc_scores(identifiers: list[str], test_puzzles: dict, puzzle_ids, inputs, preds, q_halt_logits,
                        ks=(1, 2, 5, 10, 100, 1000)) -> tuple[dict[str, float], dict]:
    """pass@K and the submission, by the official rules: blank identifier 0 skipped; per task and inverted
    input, each distinct inverted prediction collects [votes, sigmoid(q) values]; ranked by votes, then mean
    sigmoid(q), then first seen; pass@K averaged over a task's test inputs, then over all tasks."""
    import math

    votes: dict[str, dict[str, dict[str, list]]] = {}
    grids: dict[str, np.ndarray] = {}
    for identifier, tokens, predicted, q in zip(puzzle_ids, inputs, preds, q_halt_logits, strict=True):
        if int(identifier) == 0:
            continue
        name = identifiers[int(identifier)]
        task, question = official_invert(name, official_crop(tokens))
        _, answer = official_invert(name, official_crop(predicted))
        grids[official_hash(answer)] = answer
        entry = votes.setdefault(task, {}).setdefault(official_hash(question), {})
        entry.setdefault(official_hash(answer), [0, []])
        entry[official_hash(answer)][0] += 1
        entry[official_hash(answer)][1].append(1 / (1 + math.exp(-float(q))))
    totals = dict.fromkeys(ks, 0.0)
    submission = {}
    for task, puzzle in test_puzzles.items():
        submission[task] = []
        hits = dict.fromkeys(ks, 0)
        for pair in puzzle["test"]:
            candidates = votes.get(task, {}).get(official_hash(np.array(pair["input"])), {})
            ranked = [h for h, _ in sorted(candidates.items(), key=lambda kv: (kv[1][0], np.mean(kv[1][1])),
                                           reverse=True)]
            if not ranked:
                continue
            for k in ks:
                hits[k] += official_hash(np.array(pair["output"])) in ranked[:k]
            top = ranked[:2] if len(ranked) > 1 else ranked * 2
            submission[task].append({f"attempt_{i + 1}": grids[h].tolist() for i, h in enumerate(top)})
        for k in ks:
            totals[k] += hits[k] / len(puzzle["test"])
    return {f"pass@{k}": totals[k] / len(test_puzzles) for k in ks}, submission


def write_official_arc_dataset(directory, tasks: dict[str, dict], test_tasks: set[str], *, num_aug: int,
                               seed: int) -> None:
    """An ARC dataset laid out as the official ``dataset/build_arc_dataset.py`` writes it, restated from its
    description: one group per task (the original and ``num_aug`` augmented puzzles named
    ``task|||tK|||perm``, colours mapped before the dihedral transform, colour 0 fixed); train pairs (and the
    test pairs of non-test tasks) in train/, translated except one example per puzzle; test pairs of the test
    tasks in test/ at the top-left; ``all__*.npy`` (uint8 tokens, int32 indices), dataset.json,
    identifiers.json (``"<blank>"`` first), test_puzzles.json (the raw tasks of the test split)."""
    import json
    from pathlib import Path

    rng = np.random.default_rng(seed)
    directory = Path(directory)

    def encode(grid, top: int, left: int) -> np.ndarray:
        grid = np.asarray(grid, dtype=np.uint8)
        rows, cols = grid.shape
        canvas = np.pad(grid + 2, ((top, 30 - top - rows), (left, 30 - left - cols)), constant_values=0)
        if top + rows < 30:
            canvas[top + rows, left:left + cols] = 1
        if left + cols < 30:
            canvas[top:top + rows, left + cols] = 1
        return canvas.reshape(-1)

    names = {"<blank>": 0}
    arrays = {split: {"inputs": [], "labels": [], "puzzle_identifiers": [], "puzzle_indices": [0],
                      "group_indices": [0]} for split in ("train", "test")}
    for task, value in tasks.items():
        versions = [(task, lambda g: np.asarray(g, dtype=np.uint8))]
        for _ in range(num_aug):
            tid = int(rng.integers(8))
            mapping = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
            name = f"{task}|||t{tid}|||{''.join(str(int(c)) for c in mapping)}"
            versions.append((name, lambda g, m=mapping, t=tid: _official_dihedral(m[np.asarray(g, np.uint8)], t)))
        parts = {"train": value["train"] + ([] if task in test_tasks else value["test"]),
                 "test": value["test"] if task in test_tasks else []}
        for split, pairs in parts.items():
            if not pairs:
                continue
            out = arrays[split]
            for name, transform in versions:
                identifier = names.setdefault(name, len(names))
                keep = int(rng.integers(len(pairs)))
                for k, pair in enumerate(pairs):
                    inp, lab = transform(pair["input"]), transform(pair["output"])
                    top = left = 0
                    if split == "train" and k != keep:
                        top = int(rng.integers(0, 30 - max(inp.shape[0], lab.shape[0]) + 1))
                        left = int(rng.integers(0, 30 - max(inp.shape[1], lab.shape[1]) + 1))
                    out["inputs"].append(encode(inp, top, left))
                    out["labels"].append(encode(lab, top, left))
                out["puzzle_identifiers"].append(identifier)
                out["puzzle_indices"].append(len(out["inputs"]))
            out["group_indices"].append(len(out["puzzle_identifiers"]))
    for split, out in arrays.items():
        (directory / split).mkdir(parents=True)
        for key, values in out.items():
            dtype = np.uint8 if key in ("inputs", "labels") else np.int32
            np.save(directory / split / f"all__{key}.npy", np.array(values, dtype=dtype))
        puzzles = len(out["puzzle_identifiers"])
        metadata = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 12, "seq_len": 900,
                    "num_puzzle_identifiers": len(names), "total_groups": len(out["group_indices"]) - 1,
                    "mean_puzzle_examples": len(out["inputs"]) / max(puzzles, 1), "total_puzzles": puzzles,
                    "sets": ["all"]}
        (directory / split / "dataset.json").write_text(json.dumps(metadata))
    (directory / "identifiers.json").write_text(json.dumps(sorted(names, key=names.__getitem__)))
    (directory / "test_puzzles.json").write_text(json.dumps({t: tasks[t] for t in tasks if t in test_tasks}))
