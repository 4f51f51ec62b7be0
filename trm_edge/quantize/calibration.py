"""Recursion-aware calibration: the step graph is calibrated on the states met along real float32 trajectories.

One network runs 42 times per supervision step and up to 16 steps per puzzle, and its activation ranges drift
with depth (step 1 starts from the constant initial state; later steps carry the refined answer). Off-the-shelf
calibration sees only the feeds it is given, so the feeds here are ``(inputs, z_H, z_L)`` at *every* supervision
step of the calibration puzzles' float32 trajectories, recorded from the float bundle through the runtime.

Pieces: :class:`CalibrationData` (puzzles, split into calibration / validation / held-out evaluation, with the
recipe that drew them), :func:`record` (the float32 states fed to every step, and in the same pass
:class:`StepRanges`, the per-step min/max of every quantized tensor computed inside the graph), the
:class:`CalibrationReader` protocol (onnxruntime's ``get_next`` plus ``rewind``; NNCF takes it as an iterable) and
:class:`StateReader`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import onnx
from onnx import TensorProto, helper

from trm_edge.bundle.store import Bundle
from trm_edge.errors import QuantizationError, RuntimeUnavailableError, TrmEdgeError
from trm_edge.quiet import third_party_output

MIN_CALIBRATION_PUZZLES = 16  # fewer cannot represent a puzzle distribution's activation ranges


# -- puzzles ---------------------------------------------------------------------------------------------


@dataclass
class CalibrationData:
    """Puzzles for quantization, each part disjoint from the others.

    ``calibration``: their trajectories give the activation ranges. ``validation``: accuracy control measures
    exact accuracy on them (``--max-drop``). ``evaluation``: held out from both, for the parity report."""

    calibration: Any  # trm_edge.puzzles.examples.Examples
    validation: Any | None
    evaluation: Any | None
    recipe: dict[str, Any] = field(default_factory=dict)


def _check_shape(examples, config, task: str, where: str, data_task: str | None) -> None:
    if data_task is not None and data_task != task:
        raise QuantizationError(f"calibration data {where} is {data_task!r} puzzles; the bundle's model solves "
                                f"{task!r} puzzles")
    inputs = np.asarray(examples.inputs)
    if inputs.ndim != 2 or inputs.shape[1] != config.seq_len:
        raise QuantizationError(f"calibration data {where} has puzzles of shape {tuple(inputs.shape[1:])}; the "
                                f"bundle's model takes [{config.seq_len}] tokens")
    if inputs.size and (inputs.min() < 0 or inputs.max() >= config.vocab_size):
        raise QuantizationError(f"calibration data {where} has tokens {int(inputs.min())}..{int(inputs.max())}; "
                                f"the bundle's model has a vocabulary of {config.vocab_size}")


def load_calibration(bundle, *, calib_dir: str | Path | None = None, task: str | None = None, n: int = 128,
                     val_n: int = 0, eval_n: int = 0, seed: int = 0,
                     min_puzzles: int = MIN_CALIBRATION_PUZZLES) -> CalibrationData:
    """Calibration puzzles from a dataset directory (official layout: train split for calibration and validation,
    test split held out) or drawn from the task's generator (``task``). Refuses data of another task or shape
    and fewer than ``min_puzzles`` calibration puzzles."""
    from trm_edge.puzzles.dataset import read_recipe
    from trm_edge.puzzles.examples import read_examples

    config = bundle.config
    if (calib_dir is None) == (task is None):
        raise QuantizationError("give calibration data: --calib DIR (a dataset) or --calib-task TASK --calib-n N")
    if n < min_puzzles:
        raise QuantizationError(f"--calib-n {n} is too few calibration puzzles; at least {min_puzzles} are needed")
    if task is not None:
        if task != bundle.task:
            raise QuantizationError(f"--calib-task {task!r} does not match the bundle's task {bundle.task!r}")
        model_recipe = bundle.manifest.data_recipe  # the training data's recipe, when export carries it
        if not (isinstance(model_recipe, dict) and model_recipe.get("task") == task):
            model_recipe = None
        with tempfile.TemporaryDirectory(prefix="trm-edge-calib-") as tmp:
            recipe = _generate(task, Path(tmp) / "data", train=n + val_n, test=eval_n, seed=seed,
                               like=model_recipe)
            train = read_examples(str(Path(tmp) / "data"), "train")
            test = read_examples(str(Path(tmp) / "data"), "test") if eval_n else None
        source = {"source": "generated", "task": task, "seed": seed, "generator": recipe,
                  "distribution": "the model's training recipe" if model_recipe else "the task generator's defaults"}
    else:
        root = Path(calib_dir)
        try:
            train = read_examples(str(root), "train")
        except TrmEdgeError as error:
            raise QuantizationError(f"--calib {str(root)!r} is not a dataset: {error}") from None
        recipe = read_recipe(root)
        data_task = recipe.get("task") if isinstance(recipe, dict) else None
        _check_shape(train, config, bundle.task, repr(str(root)), data_task)
        try:
            test = read_examples(str(root), "test") if eval_n else None
        except TrmEdgeError:
            test = None
        source = {"source": str(root), "task": data_task or bundle.task, "split": "train",
                  "recipe": recipe if isinstance(recipe, dict) else None}
    _check_shape(train, config, bundle.task, "", None)
    if len(train) < min(n, min_puzzles) or len(train) < min_puzzles:
        raise QuantizationError(f"calibration data holds {len(train)} puzzles; at least {min_puzzles} are needed")
    n_cal = min(n, len(train))
    calibration = _rows(train, 0, n_cal)
    validation = _rows(train, n_cal, n_cal + val_n) if val_n else None
    if val_n and (validation is None or len(validation) < val_n):
        got = 0 if validation is None else len(validation)
        raise QuantizationError(f"calibration data holds {len(train)} puzzles: {n_cal} for calibration leave {got} "
                                f"of the {val_n} validation puzzles asked for; lower --calib-n or --val-n")
    evaluation = test.head(eval_n) if test is not None and eval_n else None
    recipe_out = {**source, "calibration_puzzles": n_cal, "validation_puzzles": 0 if validation is None
                  else len(validation), "evaluation_puzzles": 0 if evaluation is None else len(evaluation)}
    return CalibrationData(calibration, validation, evaluation, recipe_out)


def _rows(examples, start: int, stop: int):
    from trm_edge.puzzles.examples import Examples

    stop = min(stop, len(examples))
    if stop <= start:
        return None
    ids = None if examples.puzzle_identifiers is None else examples.puzzle_identifiers[start:stop]
    labels = None if examples.labels is None else examples.labels[start:stop]
    return Examples(examples.inputs[start:stop], labels, ids, examples.ignore_label_id)


def _generate(task: str, directory: Path, *, train: int, test: int, seed: int,
              like: dict[str, Any] | None = None) -> dict[str, Any]:
    from trm_edge.puzzles.build import build_dataset, build_from_recipe

    try:
        if like is not None:  # fresh puzzles of the training distribution (another seed: not the training set)
            return build_from_recipe(like, directory, seed=seed + 1_000_003, train=train, test=test, aug=0)
        return build_dataset(task, directory, train=train, test=test, seed=seed)
    except TrmEdgeError as error:
        raise QuantizationError(f"cannot draw {task!r} calibration puzzles: {error}") from None


# -- trajectories ----------------------------------------------------------------------------------------


@dataclass
class Trajectories:
    """The float32 states fed to each supervision step: ``z_H[k]``/``z_L[k]`` ``[n_k, total_len, hidden]`` are
    the inputs of step ``k + 1`` for puzzles ``rows[k]`` (all puzzles without halting; the ones still running
    with it)."""

    inputs: np.ndarray  # [N, seq_len] int32
    puzzle_embedding: np.ndarray | None  # [N, puzzle_emb_ndim] when the graph takes it
    z_H: list[np.ndarray]
    z_L: list[np.ndarray]
    rows: list[np.ndarray]
    halt: bool

    @property
    def steps(self) -> int:
        return len(self.z_H)

    @property
    def states(self) -> int:
        return int(sum(len(r) for r in self.rows))

    def feeds(self, step: int, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Step feeds for step index ``step`` (0-based), optionally for a subset (indices into ``rows[step]``)."""
        take = np.arange(len(self.rows[step])) if rows is None else np.asarray(rows)
        puzzles = self.rows[step][take]
        out = {"inputs": self.inputs[puzzles], "z_H": self.z_H[step][take], "z_L": self.z_L[step][take]}
        if self.puzzle_embedding is not None:
            out["puzzle_embedding"] = self.puzzle_embedding[puzzles]
        return out


def record(model: onnx.ModelProto, bundle: Bundle, examples, *, tensors: Sequence[str] = (),
           channels: Sequence[str] = (), max_steps: int | None = None, halt: bool = False, threshold: float = 0.0,
           batch_size: int = 16, threads: int = 0) -> tuple[Trajectories, StepRanges | None]:
    """Run the float32 step graph ``model`` (the bundle's, or its exact prepared form) over ``examples`` through the
    recursion core, recording the state fed to each supervision step and, in the same pass, the min/max of
    ``tensors`` at each step (reductions added to the graph, so no activation leaves the session).

    ``halt=True`` follows the runtime's early exit: a puzzle stops contributing after the step the halting rule
    stops it at ``threshold``. Default: every puzzle runs all ``halt_max_steps`` steps (the official evaluation),
    which also covers every state a halting runtime meets."""
    from trm_edge.runtimes.model_source import bundle_source
    from trm_edge.runtimes.ort import OnnxRuntime, OrtOptions
    from trm_edge.runtimes.recursion import Recursion

    config = bundle.config
    steps = max_steps or config.halt_max_steps
    tensors, channels = list(tensors), list(channels)
    range_names = [f"__range_{op}_{i}" for i in range(len(tensors)) for op in ("ReduceMin", "ReduceMax")]
    channel_names = [f"__channels_{op}_{i}" for i in range(len(channels)) for op in ("ReduceMin", "ReduceMax")]
    channel_low: dict[str, list[list[np.ndarray]]] = {t: [[] for _ in range(steps)] for t in channels}
    channel_high: dict[str, list[list[np.ndarray]]] = {t: [[] for _ in range(steps)] for t in channels}
    low = np.full((steps, len(tensors)), np.inf, np.float32)
    high = np.full((steps, len(tensors)), -np.inf, np.float32)
    parts: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(steps)]
    inputs = np.asarray(examples.inputs, np.int32)
    ids = None if examples.puzzle_identifiers is None else np.asarray(examples.puzzle_identifiers).reshape(-1)
    graph = range_model(model, tensors, channels).SerializeToString()
    runtime = OnnxRuntime(bundle_source(bundle.with_step_graph(graph, precision="fp32")), device="cpu",
                          options=OrtOptions(intra_op_threads=threads, priority_order=True),
                          extra_outputs=[*range_names, *channel_names])
    recursion = Recursion(runtime, batch_size=batch_size, max_steps=steps, halt=halt, threshold=threshold,
                          refill=False, keep_state=True)
    try:
        with runtime:
            for result in recursion.steps(inputs, ids):
                k, out = int(result.steps[0]) - 1, result.outputs  # no refill: one step per batch
                parts[k].append((result.feeds["z_H"], result.feeds["z_L"], result.puzzles))
                if tensors:
                    low[k] = np.minimum(low[k], np.array([out[n] for n in range_names[::2]], np.float32).ravel())
                    high[k] = np.maximum(high[k], np.array([out[n] for n in range_names[1::2]],
                                                           np.float32).ravel())
                for i, t in enumerate(channels):
                    channel_low[t][k].append(out[channel_names[2 * i]])
                    channel_high[t][k].append(out[channel_names[2 * i + 1]])
    except RuntimeUnavailableError as error:
        raise QuantizationError(f"onnxruntime cannot load the calibration graph: {error}") from None
    table = runtime.puzzle_embedding(np.zeros(len(inputs), np.int64) if ids is None else ids)
    last = max((k for k in range(steps) if parts[k]), default=-1) + 1
    z_H = [np.concatenate([p[0] for p in parts[k]]) for k in range(last)]
    z_L = [np.concatenate([p[1] for p in parts[k]]) for k in range(last)]
    rows = [np.concatenate([p[2] for p in parts[k]]) for k in range(last)]
    trajectories = Trajectories(inputs, table, z_H, z_L, rows, halt)
    ranges = None
    if tensors:
        ranges = StepRanges(tensors, low[:last], high[:last])
        for t in channels:
            ranges.channel_low[t] = np.stack([np.min(channel_low[t][k], axis=0) for k in range(last)])
            ranges.channel_high[t] = np.stack([np.max(channel_high[t][k], axis=0) for k in range(last)])
    return trajectories, ranges


# -- readers -----------------------------------------------------------------------------------------------


@runtime_checkable
class CalibrationReader(Protocol):
    """What the quantizer backends consume: onnxruntime's ``get_next`` (None at the end) plus ``rewind``."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...

    def rewind(self) -> None: ...


class StateReader:
    """Step feeds from :class:`Trajectories`, batch by batch, for the chosen supervision steps (1-based;
    default: every step). Iterable, so ``nncf.Dataset(reader)`` takes it too."""

    def __init__(self, trajectories: Trajectories, *, steps: Sequence[int] | None = None, batch_size: int = 8):
        self.trajectories = trajectories
        available = range(1, trajectories.steps + 1)
        self.steps = list(available) if steps is None else [int(s) for s in steps]
        bad = [s for s in self.steps if s not in available]
        if bad:
            raise QuantizationError(f"calibration steps {bad} are outside the recorded steps 1..{trajectories.steps}")
        self.batch_size = batch_size
        self.rewind()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for step in self.steps:
            count = len(self.trajectories.rows[step - 1])
            for start in range(0, count, self.batch_size):
                yield self.trajectories.feeds(step - 1, np.arange(start, min(count, start + self.batch_size)))

    def rewind(self) -> None:
        self._it = self._batches()

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self._batches()

    def __len__(self) -> int:
        return sum(-(-len(self.trajectories.rows[s - 1]) // self.batch_size) for s in self.steps)


# -- ranges ------------------------------------------------------------------------------------------------


@dataclass
class StepRanges:
    """Per supervision step, the min and max of each quantized activation tensor: ``low``/``high``
    ``[steps, tensors]``."""

    tensors: list[str]
    low: np.ndarray
    high: np.ndarray
    channel_low: dict[str, np.ndarray] = field(default_factory=dict)  # [steps, channels] for chosen tensors
    channel_high: dict[str, np.ndarray] = field(default_factory=dict)

    def channel_absmax(self) -> dict[str, np.ndarray]:
        """Per-channel max |x| over every step, for the tensors with channel statistics."""
        return {t: np.maximum(np.abs(self.channel_low[t]), np.abs(self.channel_high[t])).max(0)
                for t in self.channel_low}

    def rescale_channels(self, tensor: str, scale: np.ndarray) -> None:
        """The tensor's channels are divided by ``scale`` (smoothing): update its per-step and channel ranges."""
        low, high = self.channel_low[tensor] / scale, self.channel_high[tensor] / scale
        self.channel_low[tensor], self.channel_high[tensor] = low, high
        i = self.tensors.index(tensor)
        self.low[:, i], self.high[:, i] = low.min(1), high.max(1)

    def merged(self, steps: Sequence[int] | None = None) -> dict[str, tuple[float, float]]:
        """Ranges over the given steps (1-based; default all): what MinMax calibration on those steps yields."""
        idx = np.arange(len(self.low)) if steps is None else np.asarray(steps) - 1
        low, high = self.low[idx].min(0), self.high[idx].max(0)
        return {t: (float(lo), float(hi)) for t, lo, hi in zip(self.tensors, low, high, strict=True)}

    def coverage(self, calibrated: dict[str, tuple[float, float]]) -> list[dict[str, float]]:
        """Per step: the fraction of tensors whose range at that step lies inside ``calibrated`` and the worst
        overshoot (how far a step's range pokes out, relative to the calibrated width; 0 when covered)."""
        lo_c = np.array([calibrated[t][0] for t in self.tensors])
        hi_c = np.array([calibrated[t][1] for t in self.tensors])
        width = np.maximum(hi_c - lo_c, 1e-12)
        rows = []
        for k in range(len(self.low)):
            over = np.maximum(np.maximum(lo_c - self.low[k], 0), np.maximum(self.high[k] - hi_c, 0)) / width
            rows.append({"step": k + 1, "covered": float((over <= 1e-6).mean()), "max_overshoot": float(over.max())})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": self.tensors, "low": self.low.tolist(), "high": self.high.tolist()}


def quantized_inputs(model: onnx.ModelProto, op_types: Sequence[str], *, attention: bool = False) -> list[str]:
    """The activation tensors that int8 quantization rounds: input 0 of the weight GEMMs, and with ``attention``
    both inputs of the attention MatMuls."""
    from trm_edge.quantize.graph import int8_nodes

    inits = {t.name for t in model.graph.initializer}
    seen: list[str] = []
    for node in int8_nodes(model, tuple(op_types), attention=attention):
        for name in node.input[:2]:
            if name not in inits and name not in seen:
                seen.append(name)
    return seen


def range_model(model: onnx.ModelProto, tensors: Sequence[str], channels: Sequence[str] = ()) -> onnx.ModelProto:
    """``model`` with two extra scalar outputs per tensor, its global min and max, and for ``channels`` also the
    min and max of each last-axis channel (computed in the graph, so no activation leaves the session: the 5M
    model's activations are ~170 MB per puzzle-step)."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    graph = augmented.graph
    for i, name in enumerate(tensors):
        for op in ("ReduceMin", "ReduceMax"):
            out = f"__range_{op}_{i}"
            graph.node.append(helper.make_node(op, [name], [out], name=f"__range/{op}/{i}", keepdims=0))
            graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, []))
    for i, name in enumerate(channels):
        flat = f"__channels_flat_{i}"
        graph.node.append(helper.make_node("Flatten", [name], [flat], name=f"__channels/Flatten/{i}", axis=-1))
        for op in ("ReduceMin", "ReduceMax"):
            out = f"__channels_{op}_{i}"
            graph.node.append(helper.make_node(op, [flat], [out], name=f"__channels/{op}/{i}", axes=[0],
                                               keepdims=0))
            graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None]))
    return augmented


def tensors_data(ranges: dict[str, tuple[float, float]], method):
    """onnxruntime's TensorsData for ranges we computed (written as its calibration cache)."""
    from onnxruntime.quantization import CalibrationMethod, TensorData, TensorsData

    data = {t: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for t, (lo, hi) in ranges.items()}
    return TensorsData(method or CalibrationMethod.MinMax, data)


def histogram_ranges(model_path: Path, reader: StateReader, method: str, tensors: Sequence[str], *,
                     workdir: Path, percentile: float = 99.999) -> dict[str, tuple[float, float]]:
    """Entropy or percentile ranges from onnxruntime's histogram calibrators, restricted to ``tensors`` and fed
    one batch at a time (their augmented graph returns whole activations)."""
    from onnxruntime.quantization.calibrate import EntropyCalibrater, PercentileCalibrater

    wanted = set(tensors)
    if method == "entropy":
        base, options = EntropyCalibrater, {"symmetric": False, "num_bins": 128, "num_quantized_bins": 128}
    elif method == "percentile":
        base, options = PercentileCalibrater, {"symmetric": True, "num_bins": 2048, "percentile": percentile}
    else:
        raise QuantizationError(f"histogram calibration method {method!r} is not one of 'entropy', 'percentile'")

    class Restricted(base):  # type: ignore[misc, valid-type]
        def select_tensors_to_calibrate(self, model):
            found, infos = super().select_tensors_to_calibrate(model)
            return found & wanted, infos

    with third_party_output():  # the calibrators print a line per histogram step
        calibrator = Restricted(Path(model_path), None, Path(workdir) / "augmented.onnx", **options)
        calibrator.augment_graph()
        calibrator.create_inference_session()
        for feeds in reader:
            rows = histogram_rows(feeds, len(wanted), HISTOGRAM_BUDGET)
            for start in range(0, len(feeds["inputs"]), rows):
                calibrator.collect_data(_OneBatch({k: v[start:start + rows] for k, v in feeds.items()}))
        computed = calibrator.compute_data()
    missing = sorted(wanted - set(computed.data))
    if missing:
        raise QuantizationError(f"{method} calibration found no values for {len(missing)} tensors, e.g. {missing[0]!r}")
    return {t: (float(np.asarray(computed[t].range_value[0]).reshape(-1)[0]),
                float(np.asarray(computed[t].range_value[1]).reshape(-1)[0])) for t in tensors}


HISTOGRAM_BUDGET = 1 << 30  # bytes of activations one histogram pass may hold


def histogram_rows(feeds: dict[str, np.ndarray], tensors: int, budget: int = HISTOGRAM_BUDGET) -> int:
    """Puzzles per histogram pass: onnxruntime's histogram calibrators return every calibrated activation of a
    pass at once, ``tensors`` of them, each at most 4x a state's size per puzzle (the MLP's inner width); a
    900-token model's 121 tensors are ~0.9 GB per puzzle, so its passes take one puzzle at a time."""
    state = feeds["z_H"]
    per_puzzle = 4 * tensors * state[0].nbytes
    return max(1, min(len(state), budget // max(per_puzzle, 1)))


class _OneBatch:
    def __init__(self, feeds: dict[str, np.ndarray]) -> None:
        self.feeds: dict[str, np.ndarray] | None = feeds

    def get_next(self) -> dict[str, np.ndarray] | None:
        feeds, self.feeds = self.feeds, None
        return feeds
