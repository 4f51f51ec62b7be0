"""What a training run is configured with: the preset, the dataset's dimensions, the user's ``--set`` overrides,
and the check that the dataset holds the preset's task."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from trm_edge.config import PRESETS, TrainConfig, TRMConfig, get_preset, parse_overrides
from trm_edge.errors import ConfigError, DatasetError, TrainingError, choices
from trm_edge.puzzles.dataset import dataset_task
from trm_edge.trm.checkpoint import read_identifier_names

DATA_FIELDS = ("seq_len", "vocab_size", "num_puzzle_identifiers")  # model fields the dataset decides


def resolve_configs(preset_name: str, overrides: list[str], data_metadata: Any,
                    train_steps: int | None = None) -> tuple[TRMConfig, TrainConfig, str]:
    """The preset, with the dataset's seq_len/vocab_size/identifier count, then the ``--set`` overrides."""
    preset = get_preset(preset_name)
    model_fields = {f.name for f in dataclasses.fields(TRMConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model_items, train_items = [], []
    for item in overrides:
        key = item.partition("=")[0]
        if key in model_fields:
            model_items.append(item)
        elif key in train_fields:
            train_items.append(item)
        else:
            raise ConfigError(f"unknown --set field {key!r}; model fields: {choices(sorted(model_fields))}; "
                              f"training fields: {choices(sorted(train_fields))}")
    from_data = {}
    for key in DATA_FIELDS:
        value = data_metadata.get(key) if isinstance(data_metadata, dict) else getattr(data_metadata, key, None)
        if value is not None:
            from_data[key] = int(value)
    model_config = parse_overrides(preset.model.replace(**from_data), model_items)
    for key, value in from_data.items():
        if getattr(model_config, key) != value:
            raise ConfigError(f"--set {key}={getattr(model_config, key)} contradicts the dataset's {key}={value}")
    train_config = parse_overrides(preset.train, train_items)
    if train_steps is not None:
        train_config = dataclasses.replace(train_config, train_steps=train_steps)
    return model_config, train_config, preset.task


def check_task(preset_name: str, data: Path, recipe: dict | None, data_metadata: Any) -> None:
    """The dataset holds the preset's task: its recipe's task, or (official data has no recipe) its vocabulary."""
    preset = get_preset(preset_name)
    vocab = getattr(data_metadata, "vocab_size", None)
    found = dataset_task(recipe, None if vocab is None else int(vocab))
    if found is None:
        return
    if found != preset.task:
        fitting = [name for name, p in PRESETS.items() if p.task == found]
        raise TrainingError(f"preset {preset_name!r} trains {preset.task} but {str(data)!r} holds {found} puzzles"
                            + (f"; presets for {found}: {choices(fitting)}" if fitting else ""))


def identifier_names(data_dir: str | None, config: TRMConfig) -> list[str] | None:
    """The dataset's names of the puzzle identifiers, kept with a checkpoint whose table has a row per name."""
    names = read_identifier_names(data_dir) if data_dir and config.has_puzzle_table else None
    return names if names is not None and len(names) == config.num_puzzle_identifiers else None


def configs_for_dataset(preset_name: str, data: str | Path, overrides: list[str] | None = None,
                        train_steps: int | None = None) -> tuple[TRMConfig, TrainConfig, str, dict | None]:
    """The preset sized to a dataset directory (``train`` and ``init --data``): its task checked, then sequence
    length, vocabulary and puzzle identifiers from the dataset, then the overrides. Also the dataset's recipe."""
    from trm_edge.puzzles.dataset import read_recipe, read_split

    data = Path(data)
    if not data.is_dir():
        raise DatasetError(f"{str(data)!r} is not a dataset directory (expected train/ and test/ inside)")
    metadata = read_split(data, "train", mmap=True).metadata
    recipe = read_recipe(data)
    check_task(preset_name, data, recipe, metadata)
    model_config, train_config, task = resolve_configs(preset_name, overrides or [], metadata, train_steps)
    return model_config, train_config, task, recipe
