"""The device side of trm-edge: what ``trm-edge solve/eval/bench/compare/verify/build-engine`` on a bundle imports.
It must run on Python 3.8 (JetPack 5) with a device-only install (numpy, onnxruntime, typer, rich, pyyaml).

``make device-py38`` runs vermin over these files (``python tests/device_side.py`` prints them);
tests/test_device_py38.py checks what vermin misses and that the list covers what the device commands import."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Directories stand for every .py file below them: the puzzles, the bundle contract and reader, the runtimes, the
# target profiles, the CLI and the server, with the top-level modules they import. From the torch side only the
# checkpoint reader (trm/checkpoint.py, torch-free, and its package's __init__): the runtimes resolve the shipped
# default model and name a directory that is neither a bundle nor a checkpoint with it.
DEVICE_SIDE = (
    "trm_edge/__init__.py", "trm_edge/__main__.py", "trm_edge/cli.py", "trm_edge/errors.py", "trm_edge/io.py",
    "trm_edge/locking.py", "trm_edge/machine.py",
    "trm_edge/quiet.py", "trm_edge/config.py", "trm_edge/progress.py", "trm_edge/version.py", "trm_edge/safe_json.py",
    "trm_edge/puzzles", "trm_edge/bundle", "trm_edge/runtimes", "trm_edge/targets", "trm_edge/commands",
    "trm_edge/serve",
    "trm_edge/trm/__init__.py", "trm_edge/trm/checkpoint.py",
)
HOST_ONLY = ("trm_edge/runtimes/torch_ref.py",)  # the torch reference runtime (checkpoints, not bundles)


def device_files(root: Path = ROOT) -> list[Path]:
    """The device side's source files under ``root`` (a checkout of this repository)."""
    files: list[Path] = []
    for entry in DEVICE_SIDE:
        path = root / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if f.relative_to(root).as_posix() not in HOST_ONLY]


if __name__ == "__main__":
    print("\n".join(f.relative_to(ROOT).as_posix() for f in device_files()))
