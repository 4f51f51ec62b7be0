"""Device targets: profiles as data (one YAML file per target in this package), loaded and validated.

Export, quantize and the runtimes read a :class:`Target`; nothing else branches on device names.
Operator lists live in ``ops-*.yaml`` files that several targets share (e.g. ``tensorrt-8.5``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from trm_edge.errors import TargetError, choices
from trm_edge.targets.profile import Int8Format, OpList, Target, parse_op_list, parse_target, read_yaml

TARGETS_DIR = Path(__file__).resolve().parent
OP_LIST_PREFIX = "ops-"

__all__ = ["Int8Format", "OpList", "Target", "get_op_list", "get_target", "list_targets", "load_target"]


@functools.lru_cache(maxsize=None)  # functools.cache needs Python 3.9
def _op_lists() -> dict[str, OpList]:
    raw = {}
    for path in sorted(TARGETS_DIR.glob(f"{OP_LIST_PREFIX}*.yaml")):
        data = read_yaml(path)
        raw[str(data.get("name"))] = (path, data)
    resolved: dict[str, OpList] = {}

    def resolve(name: str, chain: tuple[str, ...] = ()) -> OpList:
        if name in resolved:
            return resolved[name]
        if name not in raw:
            raise TargetError(f"unknown op list {name!r}; known op lists: {choices(sorted(raw))}")
        if name in chain:
            raise TargetError(f"op list {name!r} extends itself through {' -> '.join(chain)}")
        path, data = raw[name]
        parent = data.get("extends")
        base = resolve(str(parent), (*chain, name)) if parent else None
        resolved[name] = parse_op_list(data, source=str(path), base=base)
        return resolved[name]

    for name in raw:
        resolve(name)
    return resolved


def get_op_list(name: str) -> OpList:
    lists = _op_lists()
    if name not in lists:
        raise TargetError(f"unknown op list {name!r}; known op lists: {choices(sorted(lists))}")
    return lists[name]


def load_target(path: str | Path) -> Target:
    """Load and validate one target profile file (the packaged ones, or a user's own)."""
    return parse_target(read_yaml(Path(path)), source=str(path), op_lists=_op_lists())


@functools.lru_cache(maxsize=None)  # functools.cache needs Python 3.9
def _targets() -> dict[str, Target]:
    found: dict[str, Target] = {}
    for path in sorted(TARGETS_DIR.glob("*.yaml")):
        if path.name.startswith(OP_LIST_PREFIX):
            continue
        target = load_target(path)
        if target.name != path.stem:
            raise TargetError(f"{str(path)!r}: name {target.name!r} does not match the file name {path.stem!r}")
        found[target.name] = target
    return found


def list_targets() -> list[Target]:
    """Every packaged target, family defaults (jetson, cpu) first, then by name."""
    defaults = ("jetson", "cpu")
    return sorted(_targets().values(), key=lambda t: (defaults.index(t.name) if t.name in defaults else 2, t.name))


def get_target(name: str | Target) -> Target:
    """The packaged target called ``name`` (a :class:`Target` passes through)."""
    if isinstance(name, Target):
        return name
    targets = _targets()
    if name not in targets:
        raise TargetError(f"unknown target {name!r}; known targets: {choices(t.name for t in list_targets())}")
    return targets[name]
