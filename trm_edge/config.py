"""TRM configuration (official field names) and named presets.

Pure Python on purpose: the CLI, the exporter and the bundle manifest read configs without torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Tuple  # a runtime tuple[...] alias needs Python 3.9

from trm_edge.errors import ConfigError, choices

POS_ENCODINGS = ("rope", "learned", "none")


# Valid ranges of the numeric fields beyond "at least 1": (low, high, low included, high included); NaN is never in
# range. A value outside is refused when the config is built, so `--set lr=-1` fails before training starts.
Range = Tuple[float, float, bool, bool]
POSITIVE: Range = (0.0, math.inf, False, False)
NON_NEGATIVE: Range = (0.0, math.inf, True, False)
FRACTION: Range = (0.0, 1.0, True, True)
DECAY: Range = (0.0, 1.0, True, False)  # a moment or EMA rate: 1 would never move
# Sizes are bounded too: a config is read from untrusted manifests, and a width of 2**63 or 10**30 supervision
# steps must be one line, not an allocation failure or a loop that never ends.
SIZE: Range = (1, 1 << 20, True, True)
COUNT: Range = (1, 1024, True, True)  # layers, cycles, supervision steps
MODEL_RANGES: dict[str, Range] = {
    "expansion": (0.0, 64.0, False, True), "num_heads": (1, 1 << 12, True, True), "halt_exploration_prob": FRACTION,
    "puzzle_emb_ndim": (0, 1 << 20, True, True), "puzzle_emb_len": (0, 1 << 12, True, True), "rms_norm_eps": POSITIVE,
    "rope_theta": POSITIVE, "seq_len": SIZE, "vocab_size": SIZE, "hidden_size": SIZE,
    "num_puzzle_identifiers": (1, 1 << 31, True, False), "L_layers": COUNT, "H_cycles": COUNT, "L_cycles": COUNT,
    "halt_max_steps": COUNT,
}
# a field's annotation -> the types it accepts and their name in messages
_FIELD_TYPES = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "bool": ((bool,), "true or false"),
                "str": ((str,), "a string")}
TRAIN_RANGES: dict[str, Range] = {
    "lr": POSITIVE, "lr_min_ratio": FRACTION, "lr_warmup_steps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
    "beta1": DECAY, "beta2": DECAY, "puzzle_emb_lr": NON_NEGATIVE, "puzzle_emb_weight_decay": NON_NEGATIVE,
    "ema_rate": DECAY, "seed": NON_NEGATIVE, "eval_max_examples": NON_NEGATIVE,
}


def check_ranges(config: Any, ranges: dict[str, Range]) -> None:
    """Raise ConfigError for the first field of ``config`` outside its range, naming the range."""
    for name, (low, high, low_in, high_in) in ranges.items():
        value = getattr(config, name)
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below):  # NaN fails both
            interval = f"{'[' if low_in else '('}{_bound(low)}, {_bound(high)}{']' if high_in else ')'}"
            raise ConfigError(f"{name}={value!r} is out of range: it must lie in {interval}")


def _bound(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class TRMConfig:
    """Architecture of one TRM; field names and meanings are the official code's."""

    seq_len: int = 81  # answer tokens per puzzle (sudoku 81, maze/ARC 900)
    vocab_size: int = 11  # official token vocabularies: sudoku 11, maze 6, ARC 12
    num_puzzle_identifiers: int = 1  # rows of the puzzle-embedding table (1 = one shared embedding)
    hidden_size: int = 512  # width of every token state
    expansion: float = 4.0  # SwiGLU expansion before the 2/3 and round-to-256 rule
    num_heads: int = 8  # attention heads (ignored with mlp_t)
    L_layers: int = 2  # blocks in the one shared network ("2-layer")
    H_cycles: int = 3  # z_H updates per supervision step
    L_cycles: int = 6  # z_L updates before each z_H update
    halt_max_steps: int = 16  # supervision steps at inference (the official evaluation runs all of them)
    halt_exploration_prob: float = 0.1  # training: chance of a random minimum number of steps
    no_ACT_continue: bool = True  # the paper's choice: halt head only, no Q-continue target
    pos_encodings: str = "rope"  # rope | learned | none
    mlp_t: bool = False  # token-mixing MLP over the sequence axis instead of attention
    puzzle_emb_ndim: int = 512  # width of a puzzle embedding (0 = none)
    puzzle_emb_len: int = 16  # positions the puzzle embedding occupies before the tokens (0 = derived)
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    forward_dtype: str = "float32"  # trm-edge's reference computes in float32 (the official default is bf16)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, (accepted, words) = getattr(self, f.name), _FIELD_TYPES[str(f.type)]
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in accepted):
                raise ConfigError(f"{f.name}={value!r} must be {words}")
        if self.pos_encodings not in POS_ENCODINGS:
            raise ConfigError(f"pos_encodings={self.pos_encodings!r} is not one of {choices(POS_ENCODINGS)}")
        for name in ("seq_len", "vocab_size", "num_puzzle_identifiers", "hidden_size", "L_layers", "H_cycles",
                     "L_cycles", "halt_max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be at least 1")
        check_ranges(self, MODEL_RANGES)
        if not self.no_ACT_continue:
            raise ConfigError("no_ACT_continue=False (halting on q_halt > q_continue, trained with a Q-continue "
                              "target) is not supported: trm-edge halts and trains on q_halt alone, as the paper's "
                              "models do (no_ACT_continue=True)")
        if not self.mlp_t and self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        if self.puzzle_emb_ndim > self.puzzle_positions * self.hidden_size:
            raise ConfigError(f"puzzle_emb_ndim={self.puzzle_emb_ndim} does not fit in puzzle_emb_len="
                              f"{self.puzzle_emb_len} positions of hidden_size={self.hidden_size}")

    @property
    def puzzle_positions(self) -> int:
        """Positions reserved for the puzzle embedding (the official ``puzzle_emb_len`` after defaulting)."""
        if self.puzzle_emb_len:
            return self.puzzle_emb_len
        return -(self.puzzle_emb_ndim // -self.hidden_size)

    @property
    def total_len(self) -> int:
        """Length of the z_H / z_L state: puzzle positions then answer tokens."""
        return self.puzzle_positions + self.seq_len

    @property
    def has_puzzle_table(self) -> bool:
        """True when the puzzle embedding must be looked up per sample (several identifiers)."""
        return self.puzzle_emb_ndim > 0 and self.num_puzzle_identifiers > 1

    @property
    def applications_per_step(self) -> int:
        return self.H_cycles * (self.L_cycles + 1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TRMConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config field(s) {choices(unknown)}; valid fields: {choices(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> TRMConfig:
        return TRMConfig.from_dict({**self.to_dict(), **changes})


def swiglu_inner_size(width: int, expansion: float) -> int:
    """The official SwiGLU inner size: round(expansion * width * 2/3) up to a multiple of 256."""
    inner = round(expansion * width * 2 / 3)
    return -(inner // -256) * 256


def parameter_count(config: TRMConfig) -> int:
    """nn.Parameters of the official model, the puzzle-embedding table excluded (it is a buffer there)."""
    d, s = config.hidden_size, config.total_len
    inner = swiglu_inner_size(d, config.expansion)
    per_layer = 3 * d * inner  # channel SwiGLU: gate_up (2*inner x d) + down (d x inner)
    if config.mlp_t:
        per_layer += 3 * s * swiglu_inner_size(s, config.expansion)
    else:
        per_layer += 4 * d * d  # qkv (3d x d) + o (d x d)
    count = config.L_layers * per_layer + 2 * config.vocab_size * d + (2 * d + 2)  # embed, lm_head, q_head
    if config.pos_encodings == "learned":
        count += s * d
    return count


@dataclass(frozen=True)
class Gemm:
    """One matrix product of a supervision step: ``[m, k] x [k, n]``, ``batched`` independent ones at a time
    (attention's per-head products), ``count`` times per step. ``weights``: the second operand is a weight (what
    INT8 quantizes); attention's q @ k^T and weighted sum multiply two activations and stay float."""

    name: str
    m: int
    k: int
    n: int
    count: int
    batched: int = 1
    weights: bool = True

    @property
    def flops(self) -> int:
        """Multiply-adds x 2 of all ``count`` products."""
        return 2 * self.m * self.k * self.n * self.batched * self.count


def step_gemms(config: TRMConfig, batch: int = 1) -> list[Gemm]:
    """The matrix products of one supervision step of ``batch`` puzzles, as the step graph computes them."""
    d, s = config.hidden_size, config.total_len
    inner = swiglu_inner_size(d, config.expansion)
    layers = config.applications_per_step * config.L_layers
    gemms = [Gemm("channel SwiGLU gate+up", batch * s, d, 2 * inner, layers),
             Gemm("channel SwiGLU down", batch * s, inner, d, layers)]
    if config.mlp_t:
        inner_t = swiglu_inner_size(s, config.expansion)
        gemms += [Gemm("token-mixing gate+up", batch * d, s, 2 * inner_t, layers),
                  Gemm("token-mixing down", batch * d, inner_t, s, layers)]
    else:
        head = d // config.num_heads
        gemms += [Gemm("attention qkv", batch * s, d, 3 * d, layers), Gemm("attention out", batch * s, d, d, layers),
                  Gemm("attention q @ k^T", s, head, s, layers, batched=batch * config.num_heads, weights=False),
                  Gemm("attention weights @ v", s, s, head, layers, batched=batch * config.num_heads, weights=False)]
    return [*gemms, Gemm("lm_head", batch * config.seq_len, d, config.vocab_size, 1), Gemm("q_head", batch, d, 2, 1)]


def flops_per_step(config: TRMConfig) -> int:
    """Multiply-adds x 2 of one supervision step for one puzzle (norms and activations not counted)."""
    return sum(gemm.flops for gemm in step_gemms(config))


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters (the paper's recipe by default)."""

    global_batch_size: int = 768
    lr: float = 1e-4
    lr_min_ratio: float = 1.0  # cosine floor as a fraction of lr (1.0 = constant after warm-up)
    lr_warmup_steps: int = 2000
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-4
    puzzle_emb_weight_decay: float = 1.0
    ema: bool = True
    ema_rate: float = 0.999
    train_steps: int = 100_000
    eval_interval: int = 5000
    checkpoint_interval: int = 1000
    seed: int = 0
    log_interval: int = 50  # steps between train records in metrics.jsonl
    eval_max_examples: int = 0  # evaluate on the first N test examples (0 = all)
    augment: bool = True  # on-the-fly validity-preserving augmentation where the task has one (sudoku)
    bf16: bool = True  # bfloat16 autocast on GPUs (CPU training is always float32)
    compile: bool = True  # torch.compile the supervision step on GPUs

    def __post_init__(self) -> None:
        for name in ("global_batch_size", "train_steps", "eval_interval", "checkpoint_interval", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be at least 1")
        check_ranges(self, TRAIN_RANGES)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training field(s) {choices(unknown)}; valid fields: {choices(sorted(known))}")
        return cls(**data)


@dataclass(frozen=True)
class Preset:
    description: str
    model: TRMConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    task: str = "sudoku"


_SUDOKU = {"seq_len": 81, "vocab_size": 11, "num_puzzle_identifiers": 1}
# The paper's 50,000 epochs over 1,000 training groups at global batch 768 (official pretrain.py's
# total_iters = epochs * total_groups * mean_puzzle_examples / global_batch_size), evaluated every 5,000 epochs.
_PAPER_1K = {"train_steps": 65_000, "eval_interval": 6_500}
_GRID30 = {"seq_len": 900, "L_cycles": 4}
# The two CPU-sized Sudoku models: one 128-wide puzzle embedding needs one position (82 instead of 97
# positions also halves sudoku-mini's token-mixing MLP: 37% fewer FLOPs per step).
_MINI = {**_SUDOKU, "hidden_size": 128, "puzzle_emb_ndim": 128, "puzzle_emb_len": 1, "H_cycles": 2, "L_cycles": 3}
_MINI_TRAIN = TrainConfig(global_batch_size=96, lr=3e-4, lr_min_ratio=0.1, lr_warmup_steps=100, weight_decay=0.1,
                          puzzle_emb_lr=3e-4, puzzle_emb_weight_decay=0.1, ema_rate=0.995, train_steps=3000,
                          eval_interval=250, checkpoint_interval=100, eval_max_examples=500, log_interval=10)

# Times per step: benchmarks/preset_speed.py on a 2-core Intel Xeon (2026-12-05), measured at batch 16 (mini presets)
# or 2 (paper presets) and scaled to the preset's global batch; the paper presets need GPUs.
PRESETS: dict[str, Preset] = {
    "sudoku-extreme-mlp": Preset(
        "Paper's best Sudoku-Extreme model: token-mixing MLP, no positions (87.4%). GPU-scale: about 4.4 min per "
        "step on 2 CPU cores (projected), months for its steps",
        TRMConfig(**_SUDOKU, mlp_t=True, pos_encodings="none"),
        TrainConfig(**_PAPER_1K),
    ),
    "sudoku-extreme-att": Preset(
        "Sudoku-Extreme with self-attention and RoPE. GPU-scale: about 4.7 min per step on 2 CPU cores (projected)",
        TRMConfig(**_SUDOKU, pos_encodings="rope"),
        TrainConfig(**_PAPER_1K),
    ),
    "maze-hard": Preset(
        "Maze-Hard 30x30 with self-attention and RoPE. GPU-scale: about 28 min per step on 2 CPU cores (projected)",
        TRMConfig(**_GRID30, vocab_size=6),
        TrainConfig(**_PAPER_1K),
        task="maze",
    ),
    "arc-agi-1": Preset(
        "ARC-AGI-1 with per-puzzle embeddings (the identifier count comes from the dataset). GPU-scale: about 25 "
        "min per step on 2 CPU cores (projected)",
        TRMConfig(**_GRID30, vocab_size=12),
        TrainConfig(weight_decay=0.1, puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.1),
        task="arc",
    ),
    "arc-agi-2": Preset(
        "ARC-AGI-2 with per-puzzle embeddings (the identifier count comes from the dataset). GPU-scale, as arc-agi-1",
        TRMConfig(**_GRID30, vocab_size=12),
        TrainConfig(weight_decay=0.1, puzzle_emb_lr=1e-2, puzzle_emb_weight_decay=0.1),
        task="arc",
    ),
    "sudoku-mini": Preset(
        "Small CPU Sudoku model (hidden 128, mlp_t): 1.5 s per step on 2 CPU cores, its 3,000 steps in about "
        "1.3 h (twice that on a loaded machine)",
        TRMConfig(**_MINI, num_heads=2, mlp_t=True, pos_encodings="none"),
        _MINI_TRAIN,
    ),
    "maze-mini": Preset(
        "Small CPU maze model (hidden 128, self-attention and RoPE) for small mazes; seq_len from the data. On 9x9 "
        "mazes, 1.6 s per step on 2 CPU cores, its 3,000 steps in about 1.3 h",
        TRMConfig(**{**_MINI, "vocab_size": 6}, num_heads=4, pos_encodings="rope"),
        _MINI_TRAIN,
        task="maze",
    ),
    "sudoku-mini-att": Preset(
        "sudoku-mini with self-attention and RoPE (stalled at 0% in 1,500 CPU steps on the default recipe); 1.6 s "
        "per step on 2 CPU cores",
        TRMConfig(**_MINI, num_heads=4, pos_encodings="rope"),
        _MINI_TRAIN,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; available presets: {choices(PRESETS)}") from None


def parse_overrides(config: Any, items: list[str]) -> Any:
    """Apply ``key=value`` strings to a config dataclass, parsing each value as the field's type."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        if key not in fields:
            raise ConfigError(f"unknown field {key!r}; valid fields: {choices(sorted(fields))}")
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value: Any = raw.lower() in ("true", "1")
            else:
                value = type(current)(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw!r} is not a valid {type(current).__name__}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={raw!r} must be finite")
        changes[key] = value
    return dataclasses.replace(config, **changes)
