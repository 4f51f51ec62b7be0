"""Fault-injection fixtures: a tiny Sudoku checkpoint and its bundle, small Sudoku and maze datasets, a read-only
directory, and the CLI run as a real process (signals, locks and exit codes are the process's)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import TINY_CONFIGS, random_trm

ROOT = Path(__file__).resolve().parents[2]
SUDOKU = "530070000600195000098000060800060003400803001700020006060000280000419005000080079"


def cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess:
    """``trm-edge ARGS`` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "trm_edge", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``trm-edge ARGS`` started in the background, with SIGINT at its default: a shell without job control starts
    background commands (``make test &``, some CI runners) with SIGINT ignored, and Python then never raises
    KeyboardInterrupt, so Ctrl-C could not be tested there."""
    return subprocess.Popen([sys.executable, "-m", "trm_edge", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and one line on stderr, ``error: ...`` holding ``words``; no traceback. Returns the line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def siblings(path: Path) -> list[str]:
    """What lies beside ``path`` under its name: the output itself and any temporary or old sibling."""
    return sorted(p.name for p in path.parent.iterdir() if p.name == path.name or p.name.startswith(f".{path.name}."))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    from trm_edge.trm.checkpoint import save_checkpoint

    return save_checkpoint(random_trm(TINY_CONFIGS["mlp"], 0), tmp_path_factory.mktemp("ckpt") / "mlp",
                           task="sudoku")


@pytest.fixture(scope="session")
def bundle(checkpoint, tmp_path_factory) -> Path:
    from trm_edge.export.exporter import export_bundle
    from trm_edge.trm.checkpoint import load_model

    return export_bundle(load_model(checkpoint), tmp_path_factory.mktemp("bundle") / "mlp", target="cpu",
                         task="sudoku", validation_steps=1)


@pytest.fixture(scope="session")
def sudoku_data(tmp_path_factory) -> Path:
    from trm_edge.puzzles.build import build_dataset

    path = tmp_path_factory.mktemp("data") / "sudoku"
    build_dataset("sudoku", path, train=16, test=8, seed=0)
    return path


@pytest.fixture(scope="session")
def maze_data(tmp_path_factory) -> Path:
    """9x9 mazes: 81 tokens, like Sudoku, so only the task check tells them apart."""
    from trm_edge.puzzles.build import build_dataset

    path = tmp_path_factory.mktemp("data") / "maze"
    build_dataset("maze", path, train=0, test=8, seed=0, options={"size": 9})
    return path


@contextmanager
def tmpfs(path: Path, options: str, what: str) -> Iterator[Path]:
    """A tmpfs mounted on ``path`` with ``options`` for the block (root only); the test is skipped, naming ``what``,
    where it cannot be mounted."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "trm-edge-test", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"running as root, and {what} cannot be mounted here: {mounted.stderr}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def read_only_dir(tmp_path) -> Path:
    """A directory nobody may write in: mode 0555 for a normal user; for root, who ignores modes, a read-only
    tmpfs mounted there (skipped where root may not mount)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with tmpfs(path, "ro,size=64k", "a read-only file system"):
        yield path
