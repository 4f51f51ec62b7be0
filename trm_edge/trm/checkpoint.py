"""trm-edge checkpoints (safetensors + config.json) and import of official TRM checkpoints.

Nothing here unpickles: trm-edge checkpoints are safetensors, and official ``step_N`` files are read
with ``torch.load(weights_only=True)``. torch is imported inside the functions that need it, so
reading a checkpoint's config (``read_checkpoint_info``) works on a torch-free device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from trm_edge.config import TRMConfig
from trm_edge.errors import CheckpointError, choices
from trm_edge.io import atomic_directory, claims_output
from trm_edge.puzzles import TASK_SEQ_LEN
from trm_edge.puzzles.dataset import IDENTIFIERS_FILE, read_identifiers
from trm_edge.version import __version__

FORMAT = "trm-edge-checkpoint/1"
WEIGHTS_FILE = "model.safetensors"
RUN_MODEL_DIR = "model"  # a training run directory keeps its final (EMA) model here
CONFIG_FILE = "config.json"
OFFICIAL_PREFIXES = ("_orig_mod.model.inner.", "model.inner.", "inner.")
PACKAGED_MODELS = Path(__file__).resolve().parent.parent / "models"


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """A checkpoint directory, a training run directory (its final model, ``RUN/model``), or the name of a
    model shipped in the package (``default``)."""
    text = str(path_or_name)
    packaged = PACKAGED_MODELS / text
    if os.sep not in text and not Path(text).exists() and (packaged / CONFIG_FILE).exists():
        return packaged
    path = Path(text)
    if not is_checkpoint(path) and is_checkpoint(path / RUN_MODEL_DIR):
        return path / RUN_MODEL_DIR
    if not is_checkpoint(path):
        shipped = sorted(p.name for p in PACKAGED_MODELS.iterdir() if (p / CONFIG_FILE).exists()) \
            if PACKAGED_MODELS.is_dir() else []
        what = "does not exist" if not path.exists() else \
            f"is not a trm-edge checkpoint (a directory with {CONFIG_FILE} and {WEIGHTS_FILE})"
        raise CheckpointError(f"{text!r} {what}" + (f"; shipped models: {choices(shipped)}" if shipped else ""))
    return path


def read_checkpoint_info(path_or_name: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's config.json (format, task, model config, data recipe, training metadata)."""
    path = resolve_model_path(path_or_name)
    try:
        info = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {str(path / CONFIG_FILE)!r}: {error}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or "model" not in info:
        raise CheckpointError(f"{str(path / CONFIG_FILE)!r} is not a {FORMAT} config")
    return info


def halt_threshold(info: dict[str, Any]) -> float:
    """The halting threshold on ``q_halt_logits`` recorded in a checkpoint's config.json (``halting.threshold``,
    calibrated on held-out puzzles of the model's distribution), else 0 (sigmoid 0.5, the official rule)."""
    return float((info.get("halting") or {}).get("threshold", 0.0))


def load_config(path_or_name: str | os.PathLike) -> TRMConfig:
    return TRMConfig.from_dict(read_checkpoint_info(path_or_name)["model"])


@claims_output("directory")
def save_checkpoint(model, directory: str | os.PathLike, *, task: str, metadata: dict[str, Any] | None = None,
                    identifiers: list[str] | None = None, force: bool = False) -> Path:
    """Write ``model`` as a trm-edge checkpoint directory, atomically; ``identifiers`` are the names of its
    puzzle identifiers (the training set's identifiers.json), which ARC solving needs on the device."""
    if identifiers is not None and len(identifiers) != model.config.num_puzzle_identifiers:
        raise CheckpointError(f"{len(identifiers)} identifier names for a model with "
                              f"{model.config.num_puzzle_identifiers} puzzle identifiers")
    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    info = {"format": FORMAT, "trm_edge_version": __version__, "task": task, "model": model.config.to_dict(),
            **(metadata or {})}
    with atomic_directory(directory, force=force) as tmp:
        write_tensors(state, tmp / WEIGHTS_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if identifiers is not None:
            (tmp / IDENTIFIERS_FILE).write_text(json.dumps(identifiers) + "\n")
    return Path(directory)


def write_tensors(tensors: dict[str, Any], path: Path) -> None:
    """Write ``tensors`` as a safetensors file through Python's own file write, not safetensors' ``save_file``: a
    full disk is then an ``OSError`` that :mod:`trm_edge.io` reports in one line (``save_file`` raises a
    ``SafetensorError`` holding only a Rust error's text)."""
    from safetensors.torch import save

    path.write_bytes(save(tensors))


def read_identifier_names(path: str | os.PathLike) -> list[str] | None:
    """The names of a checkpoint's puzzle identifiers (its identifiers.json, in the datasets' format), of a
    dataset directory's, or of a file given for them; None for a directory that has none."""
    if Path(path).is_dir() and not (Path(path) / IDENTIFIERS_FILE).is_file():
        return None
    return read_identifiers(path)


def load_model(path_or_name: str | os.PathLike):
    """Load a checkpoint as a ``TRM`` in eval mode, float32, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from trm_edge.trm.model import TRM

    path = resolve_model_path(path_or_name)
    config = load_config(path)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read {str(path / WEIGHTS_FILE)!r}: {error}") from None
    model = TRM(config)
    _load_state(model, state, source=str(path))
    return model.eval()


def _load_state(model, state: dict[str, Any], *, source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        raise CheckpointError(f"{source}: missing key(s) {choices(missing)}")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key(s) {choices(unexpected)}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(f"{source}: shape mismatch for {key!r}: expected {tuple(tensor.shape)}, "
                                  f"found {tuple(state[key].shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})


# -- official checkpoints ---------------------------------------------------------------------------

def _read_official_arch(checkpoint: Path) -> dict[str, Any]:
    config_path = checkpoint.parent / "all_config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{str(config_path)!r} is missing: an official checkpoint needs the all_config.yaml "
                              "written beside it by the official training script")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as error:
        raise CheckpointError(f"{str(config_path)!r} is not valid YAML: {' '.join(str(error).split())}") from None
    arch = config.get("arch") if isinstance(config, dict) else None
    if not isinstance(arch, dict):
        raise CheckpointError(f"{str(config_path)!r} has no 'arch:' section")
    return {k: _resolve_interpolation(v, arch) for k, v in arch.items()}


def _resolve_interpolation(value: Any, arch: dict[str, Any]) -> Any:
    """Resolve the one interpolation the official configs use, ``${.field}``, when left unresolved."""
    if isinstance(value, str) and value.startswith("${.") and value.endswith("}"):
        return arch.get(value[3:-1], value)
    return value


def _read_official_state(checkpoint: Path) -> dict[str, Any]:
    import torch

    if not checkpoint.is_file():
        raise CheckpointError(f"{str(checkpoint)!r} is not a file")
    try:
        raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign files; all mean "not a checkpoint"
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{str(checkpoint)!r} is not a PyTorch checkpoint: {reason}") from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{str(checkpoint)!r} is not a state dict of tensors")
    state = {}
    for key, tensor in raw.items():
        prefix = next((p for p in OFFICIAL_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise CheckpointError(f"{str(checkpoint)!r}: unexpected key {key!r}; official keys start with "
                                  f"{choices(OFFICIAL_PREFIXES)}")
        name = key[len(prefix):]
        if name.startswith(("rotary_emb.", "puzzle_emb.local_")):
            continue  # RoPE caches are recomputed; sparse-embedding scratch buffers are training state
        state[name] = tensor.float()
    return state


def import_official(checkpoint: str | os.PathLike, *, task: str, seq_len: int | None = None):
    """Build a float32 ``TRM`` from an official ``step_N`` file and its ``all_config.yaml``."""
    from trm_edge.trm.model import TRM

    if task not in TASK_SEQ_LEN:
        raise CheckpointError(f"unknown task {task!r}; valid tasks: {choices(TASK_SEQ_LEN)}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{str(checkpoint)!r} " + ("does not exist" if not checkpoint.exists() else
                              "is not a file (an official checkpoint is a step_N file)"))
    arch = _read_official_arch(checkpoint)
    state = _read_official_state(checkpoint)
    for key in ("embed_tokens.embedding_weight",):
        if key not in state:
            raise CheckpointError(f"{str(checkpoint)!r}: missing key {key!r}")
    known = set(TRMConfig.__dataclass_fields__) - {"seq_len", "vocab_size", "num_puzzle_identifiers",
                                                   "forward_dtype"}
    fields = {k: v for k, v in arch.items() if k in known}
    fields["seq_len"] = seq_len or TASK_SEQ_LEN[task]
    fields["vocab_size"] = int(state["embed_tokens.embedding_weight"].shape[0])
    table = state.get("puzzle_emb.weights")
    if int(fields.get("puzzle_emb_ndim", 0)) > 0:
        if table is None:
            raise CheckpointError(f"{str(checkpoint)!r}: missing key 'puzzle_emb.weights' "
                                  f"(arch has puzzle_emb_ndim={fields['puzzle_emb_ndim']})")
        fields["num_puzzle_identifiers"] = int(table.shape[0])
    try:
        config = TRMConfig.from_dict(fields)
    except TypeError as error:
        raise CheckpointError(f"all_config.yaml arch section is incomplete: {error}") from None
    model = TRM(config)
    _load_state(model, state, source=str(checkpoint))
    return model.eval()
