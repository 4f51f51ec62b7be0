"""Target profile and operator-list schemas: typed dataclasses, validated field by field on load."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trm_edge.errors import TargetError, choices

FAMILIES = ("jetson", "nvidia-gpu", "cpu")
RUNTIMES = ("onnxruntime", "tensorrt", "openvino", "torch")
PRECISIONS = ("fp32", "fp16", "int8")
INT8_FORMATS = ("qdq", "qoperator")
INT8_TYPES = ("int8", "uint8")
MIN_OPSET, MAX_OPSET = 13, 21  # 13: per-channel Q/DQ and Split-with-input; 21: newest we validate against


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise TargetError(f"cannot read target file {str(path)!r}: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise TargetError(f"{str(path)!r} is not a YAML mapping")
    return data


class _Fields:
    """Typed access to one YAML mapping that names the file and key in every error."""

    def __init__(self, data: dict[str, Any], where: str, *, required: tuple[str, ...], optional: tuple[str, ...]):
        unknown = sorted(set(data) - set(required) - set(optional))
        if unknown:
            raise TargetError(f"{where}: unknown field(s) {choices(unknown)}; valid fields: "
                              f"{choices(sorted(required + optional))}")
        missing = [k for k in required if k not in data]
        if missing:
            raise TargetError(f"{where}: missing field(s) {choices(missing)}")
        self.data, self.where = data, where

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, nullable: bool = False) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        if value is None and nullable:
            return None
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise TargetError(f"{self.where}: {key}={value!r} must be {_kind_name(kind)}")
        return value

    def strings(self, key: str, allowed: tuple[str, ...] | None = None, default: tuple[str, ...] = ()) -> tuple:
        value = self.data.get(key, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TargetError(f"{self.where}: {key} must be a list of strings, not {value!r}")
        if allowed is not None:
            bad = [v for v in value if v not in allowed]
            if bad:
                raise TargetError(f"{self.where}: {key} has unknown value(s) {choices(bad)}; valid: {choices(allowed)}")
        return tuple(value)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.get(key, str)
        if value not in allowed:
            raise TargetError(f"{self.where}: {key}={value!r} is not one of {choices(allowed)}")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"str": "a string", "int": "an integer", "bool": "true or false", "dict": "a mapping",
                        "list": "a list"}.get(k.__name__, k.__name__) for k in kinds)


# -- operator lists ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class OpList:
    """Operators a runtime's ONNX importer accepts; ``ops=None`` means every default-domain ONNX op."""

    name: str
    source: str
    max_opset: int
    domains: tuple[str, ...]
    ops: frozenset[str] | None
    initializer_inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    zero_point_zero: tuple[str, ...] = ()

    def allows(self, op_type: str, domain: str, opset: int) -> bool:
        """Whether a node ``domain::op_type`` in a graph of default-domain ``opset`` is importable."""
        domain = "" if domain == "ai.onnx" else domain
        if domain not in self.domains:
            return False
        if self.ops is not None:
            return op_type in self.ops and domain == ""
        if domain != "":
            return True  # contrib domains (com.microsoft) are the runtime's own
        import onnx.defs

        try:
            onnx.defs.get_schema(op_type, opset, "")
        except onnx.defs.SchemaError:
            return False
        return True


def parse_op_list(data: dict[str, Any], *, source: str, base: OpList | None) -> OpList:
    where = f"op list {source!r}"
    f = _Fields(data, where, required=("kind", "name", "max_opset", "ops"),
                optional=("source", "extends", "domains", "initializer_inputs", "zero_point_zero"))
    if data["kind"] != "op-list":
        raise TargetError(f"{where}: kind={data['kind']!r} must be 'op-list'")
    inherited = base.ops if base is not None and base.ops is not None else frozenset()
    ops = None if data["ops"] == "all" else frozenset(f.strings("ops")) | inherited
    inputs = f.get("initializer_inputs", dict, {})
    for op, indices in inputs.items():
        if not isinstance(indices, list) or not all(isinstance(i, int) and i >= 0 for i in indices):
            raise TargetError(f"{where}: initializer_inputs[{op!r}] must be a list of input indices")
    return OpList(
        name=f.get("name", str),
        source=f.get("source", str, ""),
        max_opset=f.get("max_opset", int),
        domains=f.strings("domains", default=("",)),
        ops=ops,
        initializer_inputs={k: tuple(v) for k, v in inputs.items()},
        zero_point_zero=f.strings("zero_point_zero"),
    )


# -- targets -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Int8Format:
    """How a target wants INT8 graphs (its ``int8:`` section): the one INT8 format type, which the quantizer
    follows (trm_edge.quantize.formats), never hard-coded per device."""

    format: str  # qdq | qoperator
    activations: str  # int8 | uint8
    weights: str  # int8 | uint8
    symmetric_activations: bool
    symmetric_weights: bool
    per_channel: bool  # weights per output channel (activations are always per tensor)
    reduce_range: bool  # 7-bit weights, for ISAs whose 16-bit intermediate sums saturate
    quantize_ops: tuple[str, ...]
    matmul_2d: bool = False  # quantized MatMuls take 2-D operands (TensorRT's per-channel INT8 MatMul rule)

    @property
    def label(self) -> str:
        """``qdq-u8s8-per-channel`` style name for reports."""
        a = "u8" if self.activations == "uint8" else "s8"
        w = "u8" if self.weights == "uint8" else "s8"
        sym = "-symmetric" if self.symmetric_activations and self.symmetric_weights else ""
        return f"{self.format}-{a}{w}{sym}-{'per-channel' if self.per_channel else 'per-tensor'}"

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    family: str
    runtimes: tuple[str, ...]
    opset: int
    op_list: OpList
    precisions: tuple[str, ...]
    int8: Int8Format | None
    memory_budget_mb: int | None
    engine_build_on_device: bool
    tensorrt: dict[str, Any] | None
    cpu_features: tuple[str, ...]
    notes: tuple[str, ...]
    source: str = ""
    speed: dict[str, float] = field(default_factory=dict)  # "RUNTIME PRECISION" -> puzzles/s vs the first entry
    speed_how: str = ""  # where, how and when ``speed`` was measured
    # a GPU module's published dense rates, {"int8_tops", "fp16_tflops", "source"}: bench's limit for the step
    # until a device measures it (runtimes/ceiling.py)
    published_dense: dict[str, Any] | None = None

    def ranking(self, precision: str) -> tuple[str, ...]:
        """The target's runtimes for a bundle of ``precision``, fastest first: those measured at that precision
        by speed, then the rest in the listed order."""
        measured = sorted(((value, key.split()[0]) for key, value in self.speed.items()
                           if key.split()[1] == precision), reverse=True)
        first = [name for _, name in measured]
        return (*first, *(r for r in self.runtimes if r not in first))

    def fastest(self) -> tuple[str, str, float] | None:
        """(runtime, precision, speed) of the fastest measured way to run this target, if any was measured."""
        if not self.speed:
            return None
        key, value = max(self.speed.items(), key=lambda item: item[1])
        runtime, precision = key.split()
        return runtime, precision, value

    def to_dict(self) -> dict[str, Any]:
        """JSON-able profile (the op list by name, with its size), as ``trm-edge targets --json`` prints."""
        return {
            "name": self.name,
            "description": self.description,
            "family": self.family,
            "runtimes": list(self.runtimes),
            "opset": self.opset,
            "op_list": self.op_list.name,
            "op_count": None if self.op_list.ops is None else len(self.op_list.ops),
            "precisions": list(self.precisions),
            "int8": self.int8.to_dict() if self.int8 else None,
            "memory_budget_mb": self.memory_budget_mb,
            "engine_build_on_device": self.engine_build_on_device,
            "tensorrt": self.tensorrt,
            "cpu_features": list(self.cpu_features),
            "speed": {"how": self.speed_how, "relative": dict(self.speed)} if self.speed else None,
            "published_dense": self.published_dense,
            "notes": list(self.notes),
        }


_TARGET_REQUIRED = ("kind", "name", "description", "family", "runtimes", "opset", "op_list", "precisions",
                    "memory_budget_mb", "engine_build_on_device")
_TARGET_OPTIONAL = ("int8", "tensorrt", "cpu_features", "notes", "speed", "published_dense")
RUNTIME_HINTS = ("bf16",)  # precisions a runtime may compute a float32 bundle in when asked (openvino:cpu:bf16)
_TENSORRT_FIELDS = ("version", "jetpack", "compute_capabilities", "dla_cores")


def parse_target(data: dict[str, Any], *, source: str, op_lists: dict[str, OpList]) -> Target:
    where = f"target {source!r}"
    f = _Fields(data, where, required=_TARGET_REQUIRED, optional=_TARGET_OPTIONAL)
    if data["kind"] != "target":
        raise TargetError(f"{where}: kind={data['kind']!r} must be 'target'")
    opset = f.get("opset", int)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise TargetError(f"{where}: opset={opset} is outside the supported range {MIN_OPSET}..{MAX_OPSET}")
    op_list_name = f.get("op_list", str)
    if op_list_name not in op_lists:
        raise TargetError(f"{where}: unknown op_list {op_list_name!r}; known op lists: {choices(sorted(op_lists))}")
    op_list = op_lists[op_list_name]
    if opset > op_list.max_opset:
        raise TargetError(f"{where}: opset={opset} is above what op list {op_list.name!r} parses "
                          f"({op_list.max_opset})")
    precisions = f.strings("precisions", PRECISIONS)
    if "fp32" not in precisions:
        raise TargetError(f"{where}: precisions must include 'fp32' (export always writes fp32 graphs)")
    int8 = _parse_int8(data.get("int8"), where) if "int8" in data else None
    if ("int8" in precisions) != (int8 is not None):
        raise TargetError(f"{where}: an 'int8:' section is required exactly when precisions include 'int8'")
    runtimes = f.strings("runtimes", RUNTIMES)
    if not runtimes:
        raise TargetError(f"{where}: runtimes must name at least one of {choices(RUNTIMES)}")
    tensorrt = f.get("tensorrt", dict, nullable=True)
    if ("tensorrt" in runtimes) != (tensorrt is not None):
        raise TargetError(f"{where}: a 'tensorrt:' section is required exactly when runtimes include 'tensorrt'")
    if tensorrt is not None:
        _Fields(tensorrt, f"{where} tensorrt", required=_TENSORRT_FIELDS, optional=("cuda", "python"))
    budget = f.get("memory_budget_mb", int, nullable=True)
    if budget is not None and budget <= 0:
        raise TargetError(f"{where}: memory_budget_mb={budget} must be positive (or null)")
    speed, speed_how = _parse_speed(data.get("speed"), where, runtimes, precisions) if "speed" in data else ({}, "")
    published = _parse_published(data["published_dense"], where) if "published_dense" in data else None
    return Target(
        name=f.get("name", str),
        description=f.get("description", str),
        family=f.choice("family", FAMILIES),
        runtimes=runtimes,
        opset=opset,
        op_list=op_list,
        precisions=precisions,
        int8=int8,
        memory_budget_mb=budget,
        engine_build_on_device=f.get("engine_build_on_device", bool),
        tensorrt=tensorrt,
        cpu_features=f.strings("cpu_features"),
        notes=f.strings("notes"),
        source=source,
        speed=speed,
        speed_how=speed_how,
        published_dense=published,
    )


def _parse_published(data: Any, where: str) -> dict[str, Any]:
    """``published_dense: {int8_tops: N, fp16_tflops: N, source: TEXT}``: positive rates and where they come from."""
    where = f"{where} published_dense"
    if not isinstance(data, dict):
        raise TargetError(f"{where}: must be a mapping")
    f = _Fields(data, where, required=("int8_tops", "fp16_tflops", "source"), optional=())
    for key in ("int8_tops", "fp16_tflops"):
        value = f.get(key, (int, float))
        if isinstance(value, bool) or value <= 0:
            raise TargetError(f"{where}: {key}={value!r} must be a positive number")
    return {"int8_tops": float(data["int8_tops"]), "fp16_tflops": float(data["fp16_tflops"]),
            "source": f.get("source", str)}


def _parse_speed(data: Any, where: str, runtimes: tuple[str, ...], precisions: tuple[str, ...]
                 ) -> tuple[dict[str, float], str]:
    """``speed: {how: TEXT, relative: {"RUNTIME PRECISION": FACTOR, ...}}``: measured throughput ratios."""
    where = f"{where} speed"
    if not isinstance(data, dict):
        raise TargetError(f"{where}: must be a mapping")
    f = _Fields(data, where, required=("how", "relative"), optional=())
    how, relative = f.get("how", str), f.get("relative", dict)
    speed = {}
    for key, value in relative.items():
        parts = str(key).split()
        if len(parts) != 2 or parts[0] not in runtimes or parts[1] not in (*precisions, *RUNTIME_HINTS):
            raise TargetError(f"{where}: {key!r} is not 'RUNTIME PRECISION' with a runtime of {choices(runtimes)} "
                              f"and a precision of {choices((*precisions, *RUNTIME_HINTS))}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise TargetError(f"{where}: {key}={value!r} must be a positive number")
        speed[" ".join(parts)] = float(value)
    return speed, how


def _parse_int8(data: Any, where: str) -> Int8Format:
    where = f"{where} int8"
    if not isinstance(data, dict):
        raise TargetError(f"{where}: must be a mapping")
    names = tuple(n for n in Int8Format.__dataclass_fields__ if n != "matmul_2d")
    f = _Fields(data, where, required=names, optional=("matmul_2d",))
    return Int8Format(
        format=f.choice("format", INT8_FORMATS),
        activations=f.choice("activations", INT8_TYPES),
        weights=f.choice("weights", INT8_TYPES),
        symmetric_activations=f.get("symmetric_activations", bool),
        symmetric_weights=f.get("symmetric_weights", bool),
        per_channel=f.get("per_channel", bool),
        reduce_range=f.get("reduce_range", bool),
        quantize_ops=f.strings("quantize_ops"),
        matmul_2d=f.get("matmul_2d", bool, False),
    )
