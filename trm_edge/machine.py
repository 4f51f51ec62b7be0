"""What this machine lets trm-edge use: the CPU cores of this process (its affinity, not the machine's count), and
the CPU's name and the instructions that speed up int8 and bf16 matrix products."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# /proc/cpuinfo flags (x86) and Features (ARM) that matter for int8/bf16 GEMMs, as their vendors write them
MATRIX_FEATURES = {
    "amx_int8": "AMX-INT8", "amx_bf16": "AMX-BF16", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16", "avx512f": "AVX-512", "avx2": "AVX2",
    "asimddp": "NEON dot product", "i8mm": "NEON I8MM", "bf16": "NEON BF16", "sve": "SVE",
}


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def cpu_name() -> str:
    """The CPU's model name (x86: 'model name'; ARM boards often give none: the architecture then)."""
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's flags as /proc/cpuinfo names them (what target profiles' ``cpu_features`` list)."""
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_features() -> list[str]:
    """The CPU's int8/bf16 matrix instructions (:data:`MATRIX_FEATURES`), by their vendors' names."""
    flags = cpu_flags()
    return [name for flag, name in MATRIX_FEATURES.items() if flag in flags]


def this_machine(threads: int) -> dict[str, object]:
    """What a speed figure was measured on: ``{"cpu", "features", "threads"}`` (bench's ``machine``)."""
    return {"cpu": cpu_name(), "features": cpu_features(), "threads": threads}


def describe(machine: dict) -> str:
    """``NAME (AMX-INT8, ...), N threads``: the line that names the machine beside speed figures."""
    features = ", ".join(machine["features"]) or "no int8/bf16 matrix instructions"
    return f"{machine['cpu']} ({features}), {machine['threads']} threads"
