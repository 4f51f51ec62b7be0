"""The one way outputs are written (trm_edge.io, trm_edge.locking): refusals before work, atomic replacement by
exchange or by two renames with recovery, litter of killed writers cleared, one writer at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, siblings
from trm_edge import io
from trm_edge.errors import OutputError, OutputExistsError, OutputLockedError
from trm_edge.locking import lock_path, output_lock


def write_dir(path: Path, text: str, *, force: bool = True) -> None:
    with io.atomic_directory(path, force=force) as tmp:
        (tmp / "a.txt").write_text(text)
        (tmp / "b.txt").write_text(text)


def test_a_new_directory_arrives_whole_and_alone(tmp_path):
    write_dir(tmp_path / "out", "new", force=False)
    assert (tmp_path / "out" / "a.txt").read_text() == "new"
    assert siblings(tmp_path / "out") == ["out"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_replacing_a_directory_leaves_only_the_new_one(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    write_dir(tmp_path / "out", "old")
    write_dir(tmp_path / "out", "new")
    assert {p.name: p.read_text() for p in (tmp_path / "out").iterdir()} == {"a.txt": "new", "b.txt": "new"}
    assert siblings(tmp_path / "out") == ["out"]


def test_an_existing_output_is_refused_without_force_files_too(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="--force"):
        write_dir(tmp_path / "out", "new", force=False)
    with pytest.raises(OutputExistsError, match="--force"), io.atomic_file(tmp_path / "file.json") as tmp:
        tmp.write_text("[]")
    assert (tmp_path / "file.json").read_text() == "{}"


def test_a_failed_write_leaves_the_old_output_and_no_litter(tmp_path):
    write_dir(tmp_path / "out", "old")
    with pytest.raises(RuntimeError), io.atomic_directory(tmp_path / "out", force=True) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("disk full")
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert siblings(tmp_path / "out") == ["out"]


def test_the_checks_before_work(tmp_path, monkeypatch, read_only_dir):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        io.check_output(tmp_path / "file" / "sub" / "out", force=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="current directory"):
        io.check_output(".", force=True)
    with pytest.raises(OutputError, match="cannot write"):
        io.check_output(read_only_dir / "new" / "out", force=False)


def test_the_next_writer_clears_a_killed_writers_litter_and_restores_an_interrupted_swap(tmp_path):
    out = tmp_path / "out"
    write_dir(out, "old")
    (tmp_path / ".out.tmp-abcd1234").mkdir()  # a writer killed mid-write
    out.rename(tmp_path / ".out.old")  # a writer killed between the two renames of a swap
    assert io.clear_litter(out) == [tmp_path / ".out.tmp-abcd1234"]
    assert (out / "a.txt").read_text() == "old"
    assert siblings(out) == ["out"]
    (tmp_path / ".out.old").mkdir()  # the swap's second rename happened: the old copy goes
    (tmp_path / ".outer.tmp-abcd1234").mkdir()  # another output's temporary stays
    io.clear_litter(out)
    assert siblings(out) == ["out"] and (tmp_path / ".outer.tmp-abcd1234").exists()


HOLD = textwrap.dedent("""
    import sys, time
    from trm_edge.locking import output_lock
    with output_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=f"PID {holder.pid}"):
            write_dir(out, "new", force=False)
    finally:
        holder.kill()
        holder.wait()
    write_dir(out, "new", force=False)  # the kernel dropped the dead holder's lock; its lock file is reused
    assert not lock_path(out).exists()


def test_locks_are_reentrant_within_a_process(tmp_path):
    out = tmp_path / "out"
    with output_lock(out), output_lock(out):
        write_dir(out, "new", force=False)
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()
