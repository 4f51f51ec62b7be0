"""The device side runs on Python 3.8 (JetPack 5). ``make device-py38`` (vermin) checks the standard library and
syntax; these tests check what vermin misses, that its file list covers what the device commands import, and
run the device commands under a real Python 3.8 when one with the device-side packages is at hand."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.device_side import HOST_ONLY, ROOT, device_files

BUNDLE = ROOT / "trm_edge" / "models" / "default" / "bundle"
PUZZLE = "24.6.9..51..34.6.8...175.43.6....82...159.4.79..8.6......9..7..59826731...64.19.."  # the Makefile's demo
SHIM = ROOT / "tests" / "runtimes" / "notorch"  # makes the host side's packages unimportable
DEVICE_PACKAGES = ("numpy", "onnxruntime", "typer", "rich", "yaml")

GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}  # subscriptable from Python 3.9
BUILTIN_TYPES = GENERICS | {"str", "bytes", "int", "float", "complex", "bool", "object"}
NEWER = {("functools", "cache"): "3.9", ("itertools", "pairwise"): "3.10"}


def python38_problems(path: Path) -> list[str]:
    """What in a module fails on Python 3.8 and vermin does not report (one line each, ``path:line: what``):
    zip(strict=), str.removeprefix/removesuffix, functools.cache, itertools.pairwise, ``X | Y`` and
    ``list[...]``-style generics evaluated at runtime (outside annotations, in isinstance, in typer command
    signatures, which typer evaluates, or in any annotation of a module without ``from __future__ import
    annotations``), and syntax newer than 3.8."""
    source = path.read_text()
    problems: list[str] = []
    try:
        ast.parse(source, str(path), feature_version=(3, 8))
    except SyntaxError as error:
        problems.append(f"{path}:{error.lineno}: syntax newer than Python 3.8: {error.msg}")
    tree = ast.parse(source, str(path))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    abc = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
           and n.module in ("collections.abc", "collections") for a in n.names}

    def is_generic(node: ast.AST) -> bool:
        return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and (
            node.value.id in GENERICS or node.value.id in abc)

    def is_union(node: ast.AST) -> bool:
        return isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr)

    def newer_typing(node: ast.AST) -> bool:
        return any(is_generic(n) or is_union(n) for n in ast.walk(node))

    def say(node: ast.AST, what: str) -> None:
        problems.append(f"{path}:{node.lineno}: {what}")

    in_annotation: set[int] = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs, *filter(None, (args.vararg, args.kwarg))]
            annotations = [p.annotation for p in params if p.annotation] + ([node.returns] if node.returns else [])
            if _is_typer_command(node):  # typer evaluates the signature (typing.get_type_hints)
                for annotation in annotations:
                    if newer_typing(annotation):
                        say(annotation, f"typer command {node.name}() is annotated {ast.unparse(annotation)!r}, "
                                        "which typer evaluates: use typing.List/Optional")
        elif isinstance(node, ast.AnnAssign):
            annotations = [node.annotation]
        for annotation in annotations:
            if not future and newer_typing(annotation):
                say(annotation, f"annotation {ast.unparse(annotation)!r} without `from __future__ import annotations`")
            in_annotation.update(id(n) for n in ast.walk(annotation))

    for node in ast.walk(tree):
        if id(node) in in_annotation:
            continue
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "zip" and any(k.arg == "strict" for k in node.keywords):
                say(node, "zip(strict=) needs Python 3.10")
            if isinstance(func, ast.Attribute) and func.attr in ("removeprefix", "removesuffix"):
                say(node, f".{func.attr}() needs Python 3.9")
            if (isinstance(func, ast.Name) and func.id in ("isinstance", "issubclass") and len(node.args) == 2
                    and any(is_union(n) for n in ast.walk(node.args[1]))):
                say(node, f"{func.id}(..., X | Y) needs Python 3.10: pass a tuple")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in NEWER:
                say(node, f"{node.value.id}.{node.attr} needs Python {NEWER[node.value.id, node.attr]}")
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (node.module, alias.name) in NEWER:
                    say(node, f"{node.module}.{alias.name} needs Python {NEWER[node.module, alias.name]}")
        elif is_generic(node):
            say(node, f"{ast.unparse(node)} at runtime needs Python 3.9: use typing's")
        elif is_union(node) and any(_is_type(side) for side in (node.left, node.right)):
            say(node, f"{ast.unparse(node)} at runtime needs Python 3.10: use typing.Union/Optional")
    return problems


def _is_typer_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether some parameter defaults to ``typer.Option(...)`` or ``typer.Argument(...)``."""
    defaults = [*node.args.defaults, *filter(None, node.args.kw_defaults)]
    return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("Option", "Argument")
               and isinstance(d.func.value, ast.Name) and d.func.value.id == "typer" for d in defaults)


def _is_type(node: ast.AST) -> bool:
    """A side of ``|`` that is surely a type, not a number or a set: None, a builtin type, os.PathLike."""
    return ((isinstance(node, ast.Constant) and node.value is None)
            or (isinstance(node, ast.Name) and node.id in BUILTIN_TYPES)
            or (isinstance(node, ast.Attribute) and node.attr == "PathLike"))


def test_the_device_side_has_nothing_python_3_8_lacks():
    files = device_files()
    assert len(files) > 30 and all(f.is_file() for f in files)
    problems = [p for f in files for p in python38_problems(f)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_what_it_looks_for(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text('''import functools
import itertools
import os
from collections.abc import Callable

import typer

Progress = Callable[[str], None]
Sets = tuple[int, int]


@functools.cache
def f(a: list[int], b: int | None = None) -> dict[str, int]:
    isinstance(a, str | os.PathLike)
    "x".removeprefix("y").removesuffix("z")
    return dict(zip(a, itertools.pairwise(a), strict=True))


def command(names: list[str] = typer.Option(None), n: int | None = typer.Option(None)) -> None:
    match n:
        case _:
            pass
''')
    found = "\n".join(python38_problems(module))
    for what in ("syntax newer than Python 3.8", "without `from __future__ import annotations`",
                 "Callable[[str], None] at runtime", "tuple[int, int] at runtime", "functools.cache",
                 "isinstance(..., X | Y)", ".removeprefix()", ".removesuffix()", "zip(strict=)",
                 "itertools.pairwise", "command() is annotated 'list[str]'", "command() is annotated 'int | None'"):
        assert what in found, what
    module.write_text(module.read_text().replace("import functools", "from __future__ import annotations\n\n"
                                                 "import functools").split("\n\ndef command")[0])
    found = "\n".join(python38_problems(module))
    assert "without `from __future__" not in found and "zip(strict=)" in found
    module.write_text("from __future__ import annotations\n\nmask = 1 | 2\ncells = {1} | {2}\n"  # no false alarms
                      "def f(rows: list[int], n: int | None) -> tuple[int, ...] | None:\n"
                      "    return rows[0] | rows[1]\n")
    assert python38_problems(module) == []


def test_the_device_side_list_covers_what_the_device_commands_import():
    """solve (on a bundle, and on the shipped default model) and verify, run in one process with the host packages
    blocked, import only listed modules (so `make device-py38` checks them all)."""
    code = f"""
import sys
from trm_edge.cli import main
for argv in (["solve", {PUZZLE!r}, "--model", {str(BUNDLE)!r}, "--json"], ["solve", {PUZZLE!r}, "--json"],
             ["verify", {str(BUNDLE)!r}]):
    sys.argv = ["trm-edge", *argv]
    try:
        main()
    except SystemExit as done:
        assert not done.code, (argv, done.code)
print(sorted(m for m in sys.modules if m == "trm_edge" or m.startswith("trm_edge.")))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SHIM), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    imported = ast.literal_eval(result.stdout.splitlines()[-1])
    listed = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for f in device_files()}
    assert "trm_edge.runtimes.ort" in imported
    assert set(imported) <= listed, sorted(set(imported) - listed)
    assert not any(m.replace(".", "/") + ".py" in HOST_ONLY for m in imported)


def _python38() -> tuple[str, str] | None:
    """A Python 3.8 that imports the device-side packages, and the PYTHONPATH entry it needs for them (''
    when it has them itself). Candidates: $TRM_EDGE_PY38 (e.g. a 3.8 virtual environment's python), python3.8
    on PATH, pyenv's 3.8 builds; packages from the interpreter or from $TRM_EDGE_PY38_SITE."""
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [os.environ.get("TRM_EDGE_PY38"), shutil.which("python3.8"),
                  *sorted(glob.glob(os.path.join(pyenv, "versions", "3.8*", "bin", "python3.8")))]
    sites = [os.environ.get("TRM_EDGE_PY38_SITE", ""), ""]
    probe = "import sys; assert sys.version_info[:2] == (3, 8); import " + ", ".join(DEVICE_PACKAGES)
    for python in dict.fromkeys(filter(None, candidates)):
        for site in dict.fromkeys(sites):
            env = {**os.environ, "PYTHONPATH": site, "PYTHONNOUSERSITE": "1"}
            try:
                ok = subprocess.run([python, "-c", probe], capture_output=True, env=env, timeout=120).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
            if ok:
                return python, site
    return None


def test_the_device_commands_run_on_python_3_8():
    """solve and verify on the shipped bundle under a real Python 3.8, this checkout on PYTHONPATH and the host
    packages blocked: what vermin and the AST check cannot prove."""
    found = _python38()
    if found is None:
        pytest.skip("no Python 3.8 with " + ", ".join(DEVICE_PACKAGES) + " found (tried $TRM_EDGE_PY38, python3.8 "
                    "on PATH, ~/.pyenv/versions/3.8*): set TRM_EDGE_PY38 to a 3.8 virtual environment's python, or "
                    "TRM_EDGE_PY38_SITE to a 3.8 site-packages holding those packages")
    python, site = found
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), str(ROOT), site])),
           "PYTHONNOUSERSITE": "1"}

    def device(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-m", "trm_edge", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                              timeout=300)

    solved = device("solve", PUZZLE, "--model", str(BUNDLE), "--json")
    assert solved.returncode == 0, solved.stderr
    answer = json.loads(solved.stdout)
    assert answer["valid"] is True and len(answer["solution"]) == 81
    verified = device("verify", str(BUNDLE))
    assert verified.returncode == 0, verified.stderr
    assert "PASS" in verified.stdout
    host = device("export", "default", "--target", "cpu", "-o", str(ROOT / ".no-such-bundle"))
    assert host.returncode == 2 and "pip install 'trm-edge[host]'" in host.stderr, host.stderr


def test_serve_runs_on_python_3_8():
    """`trm-edge serve` under a real Python 3.8 with the serve extra's releases for it (pip picks them: fastapi,
    uvicorn and prometheus-client dropped 3.8 later): ready, one answer equal to solve's, SIGTERM exits 0."""
    found = _python38()
    if found is None:
        pytest.skip("no Python 3.8 with the device-side packages (see test_the_device_commands_run_on_python_3_8)")
    python, site = found
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(SHIM), str(ROOT), site])), "PYTHONNOUSERSITE": "1"}
    if subprocess.run([python, "-c", "import fastapi, uvicorn, prometheus_client"], env={**os.environ, **env},
                      capture_output=True).returncode:
        pytest.skip(f"{python} lacks the serve extra (pip install '.[serve]' there)")
    from tests.runtimes.serving import Server

    server = Server(BUNDLE, python=python, env=env)
    try:
        status, body = server.solve({"puzzles": [PUZZLE]})
        solved = subprocess.run([sys.executable, "-m", "trm_edge", "solve", PUZZLE, "--model", str(BUNDLE), "--json"],
                                capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert status == 200 and body["answers"] == [json.loads(solved.stdout)]
    finally:
        assert server.stop() == 0
