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
