"""Exact 9x9 Sudoku solver: bitmask constraint propagation + backtracking, pure Python.

Each cell holds a 9-bit mask of its candidate digits (bit ``d-1`` for digit ``d``). Propagation
applies naked singles (a cell with one candidate removes it from its 20 peers) and hidden singles
(a digit with one place left in a row, column or box goes there) until nothing changes; the search
then branches on a cell with the fewest candidates (MRV). This is the shape of tdoku's simple
solvers, without SIMD, and it is fast enough in CPython to generate ~10k puzzles a minute because
every hot loop is a few list lookups on small ints.

The difficulty **rating** is the number of dead ends (backtracks) met while exploring the whole
search tree of a puzzle, i.e. while finding its solution *and* proving that it is the only one,
like the backtrack count of tdoku that Sudoku-Extreme is rated by. A puzzle that singles alone
solve rates 0. The whole tree does not depend on the order in which digits are tried, so the
rating is invariant under digit permutations; the branch cell is the first MRV cell in reading
order, so geometric transforms can change it a little.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = 0x1FF  # all nine digits possible
_ROW = tuple(c // 9 for c in range(81))
_COL = tuple(c % 9 for c in range(81))
_BOX = tuple((c // 27) * 3 + (c % 9) // 3 for c in range(81))

UNITS: tuple[tuple[int, ...], ...] = (
    tuple(tuple(r * 9 + c for c in range(9)) for r in range(9))
    + tuple(tuple(r * 9 + c for r in range(9)) for c in range(9))
    + tuple(tuple(c for c in range(81) if _BOX[c] == b) for b in range(9))
)
PEERS: tuple[tuple[int, ...], ...] = tuple(
    tuple(p for p in range(81) if p != c and (_ROW[p] == _ROW[c] or _COL[p] == _COL[c] or _BOX[p] == _BOX[c]))
    for c in range(81)
)
# bit u set for each of the three units (row u, column 9+u, box 18+u) that contain a cell
UNIT_BITS = tuple((1 << _ROW[c]) | (1 << (9 + _COL[c])) | (1 << (18 + _BOX[c])) for c in range(81))
POPCOUNT = tuple(bin(m).count("1") for m in range(512))
# digit (1-9) of a single-bit mask; 0 for masks that are not a single bit
DIGIT = tuple((m.bit_length() if POPCOUNT[m] == 1 else 0) for m in range(512))
# the single-bit masks contained in each mask, lowest digit first
BITS = tuple(tuple(1 << i for i in range(9) if m >> i & 1) for m in range(512))


@dataclass
class SolveStats:
    """What the search did; ``dead_ends`` of a full search is the rating (see the module docstring)."""

    guesses: int = 0  # trial assignments at branch points
    dead_ends: int = 0  # branches that ended in a contradiction (backtracks)


def candidates(cells: list[int]) -> list[int] | None:
    """Candidate masks of 81 cells (digits 0-9, 0 = blank), or None when two givens clash."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for c, d in enumerate(cells):
        if d:
            bit = 1 << (d - 1)
            r, k, b = _ROW[c], _COL[c], _BOX[c]
            if (rows[r] | cols[k] | boxes[b]) & bit:
                return None
            rows[r] |= bit
            cols[k] |= bit
            boxes[b] |= bit
    return [
        (1 << (d - 1)) if d else ALL & ~(rows[_ROW[c]] | cols[_COL[c]] | boxes[_BOX[c]])
        for c, d in enumerate(cells)
    ]


def propagate(cand: list[int], queue: list[int], peers=PEERS, units=UNITS, unit_bits=UNIT_BITS) -> bool:
    """Apply naked and hidden singles in place until a fixpoint; False on a contradiction.

    ``queue`` lists cells that became single but whose digit was not yet removed from their peers.
    Only units touched since the last hidden-singles pass are rescanned (``dirty``, one bit per
    unit). The table arguments are bound as defaults because local lookups are faster in CPython.
    """
    dirty = 0x7FFFFFF
    while True:
        while queue:
            c = queue.pop()
            m = cand[c]
            for p in peers[c]:
                pm = cand[p]
                if pm & m:
                    pm ^= m
                    if not pm:
                        return False
                    cand[p] = pm
                    dirty |= unit_bits[p]
                    if not pm & (pm - 1):
                        queue.append(p)
        scan, dirty, u = dirty, 0, 0
        while scan:
            if scan & 1:
                unit = units[u]
                once = twice = 0
                for c in unit:
                    m = cand[c]
                    twice |= once & m
                    once |= m
                if once != 0x1FF:
                    return False  # a digit has no place left in this unit
                hidden = once & ~twice
                if hidden:
                    for c in unit:
                        m = cand[c]
                        h = m & hidden
                        if h:
                            if h & (h - 1):
                                return False  # two digits can only go in this one cell
                            if h == m:
                                continue
                            cand[c] = h
                            dirty |= unit_bits[c]
                            queue.append(c)
            scan >>= 1
            u += 1
        if not queue:
            return True


def _branch_cell(cand: list[int]) -> int:
    """The first unsolved cell with the fewest candidates, or -1 when all cells are single."""
    best, best_count = -1, 10
    for c in range(81):
        n = POPCOUNT[cand[c]]
        if 1 < n < best_count:
            best, best_count = c, n
            if n == 2:
                break
    return best


def search(cand: list[int], limit: int, stats: SolveStats, found: list[list[int]]) -> None:
    """Depth-first search from a propagated state; appends solutions (masks) to ``found``."""
    c = _branch_cell(cand)
    if c < 0:
        found.append(cand)
        return
    for bit in BITS[cand[c]]:
        stats.guesses += 1
        child = cand.copy()
        child[c] = bit
        if propagate(child, [c]):
            search(child, limit, stats, found)
            if len(found) >= limit:
                return
        else:
            stats.dead_ends += 1


def solve_cells(cells: list[int], limit: int = 2) -> tuple[list[list[int]], SolveStats]:
    """Up to ``limit`` solutions (lists of 81 digits) of 81 cells (0 = blank), and search stats."""
    stats = SolveStats()
    cand = candidates(cells)
    if cand is None or not all(cand):
        return [], stats
    found: list[list[int]] = []
    if propagate(cand, [c for c in range(81) if not cells[c] and POPCOUNT[cand[c]] == 1]):
        search(cand, limit, stats, found)
    return [[DIGIT[m] for m in sol] for sol in found], stats


def has_other_solution(cells: list[int], cell: int, digit: int) -> bool:
    """Whether the puzzle ``cells`` (with ``cell`` blank) has a solution where ``cell`` != ``digit``.

    The generator's uniqueness test: blanking one more cell of a puzzle whose unique solution puts
    ``digit`` there keeps the solution unique exactly when no solution puts another digit there.
    """
    cand = candidates(cells)
    if cand is None:
        return False
    cand[cell] &= ~(1 << (digit - 1))
    if not all(cand):
        return False
    queue = [c for c in range(81) if not cells[c] and POPCOUNT[cand[c]] == 1]
    if not propagate(cand, queue):
        return False
    found: list[list[int]] = []
    search(cand, 1, SolveStats(), found)
    return bool(found)


def random_solution(rng) -> list[int]:
    """A random complete grid (``rng`` is a ``random.Random``).

    The three diagonal boxes share no row or column, so each gets an independent random
    permutation; the rest is found by search trying digits in random order. Takes ~0.5 ms.
    """
    cells = [0] * 81
    for box in (0, 4, 8):
        for c, d in zip(UNITS[18 + box], rng.sample(range(1, 10), 9)):  # noqa: B905
            cells[c] = d
    cand = candidates(cells)
    assert cand is not None and propagate(cand, [])

    def fill(state: list[int]) -> list[int] | None:
        c = _branch_cell(state)
        if c < 0:
            return state
        bits = BITS[state[c]]
        for bit in rng.sample(bits, len(bits)):
            child = state.copy()
            child[c] = bit
            if propagate(child, [c]):
                done = fill(child)
                if done is not None:
                    return done
        return None

    solved = fill(cand)
    assert solved is not None  # any three filled diagonal boxes extend to a full grid
    return [DIGIT[m] for m in solved]


def dig(solution: list[int], target: int, rng, *, prefix_givens: int = 45) -> list[int]:
    """Blank cells of ``solution`` in random order while the solution stays unique, down to
    ``target`` givens or until no further cell can go (a minimal puzzle).

    Greedy removal checks each cell with :func:`has_other_solution`. Uniqueness is monotone (adding
    givens never adds solutions), so the first ``81 - prefix_givens`` cells of the order are tried
    in one go with one check: when that succeeds the greedy pass would have removed each of them
    too, so the result is the same and ~35 checks are saved.
    """
    order = list(range(81))
    rng.shuffle(order)
    start = 81 - max(target, prefix_givens)
    cells = solution.copy()
    for c in order[:start]:
        cells[c] = 0
    if len(solve_cells(cells, 2)[0]) != 1:
        cells, start = solution.copy(), 0
    givens = 81 - start
    for c in order[start:]:
        if givens <= target:
            break
        digit = cells[c]
        cells[c] = 0
        if has_other_solution(cells, c, digit):
            cells[c] = digit
        else:
            givens -= 1
    return cells


def rate(cells: list[int]) -> int:
    """Difficulty rating of a puzzle: dead ends (backtracks) in its whole search tree."""
    return solve_cells(cells, 2)[1].dead_ends
