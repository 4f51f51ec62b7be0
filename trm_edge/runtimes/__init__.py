"""Bundles -> answers, torch-free: one Runtime interface (onnxruntime, tensorrt, the torch reference)
and one host loop (solver.py) shared by all of them.

    from trm_edge.runtimes import open_runtime, Solver
    with open_runtime("bundle/") as rt:                 # onnxruntime, or the target's runtime
        out = Solver(rt, halt=True).run(tokens)        # preds, steps, confidence per puzzle

Adapters are imported by name when asked for (``get_runtime``), so importing this package pulls in
neither torch nor onnxruntime nor tensorrt.
"""

from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.recurrence import Recurrence
from trm_edge.runtimes.registry import RUNTIMES, available_runtimes, get_runtime
from trm_edge.runtimes.solver import SolveOutput, Solver
from trm_edge.runtimes.sources import ModelSource, open_runtime, open_source

__all__ = ["RUNTIMES", "ModelSource", "Recurrence", "Runtime", "SolveOutput", "Solver", "available_runtimes",
           "get_runtime", "open_runtime", "open_source"]
