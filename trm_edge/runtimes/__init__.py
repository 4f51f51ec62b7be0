"""Bundles -> answers, torch-free: one Runtime interface (onnxruntime, OpenVINO, TensorRT, the torch reference) and
one recursion core (recursion.py) on which the solver, parity, calibration recording and export validation run.

    from trm_edge.runtimes import open_runtime, Solver
    with open_runtime("bundle/") as rt:   # the fastest installed runtime holding parity on the bundle's target
        out = Solver(rt).run(tokens)     # halts at the model's calibrated threshold by default

Adapters are imported by name when asked for (``get_runtime``), so importing this package pulls in
neither torch nor onnxruntime nor OpenVINO nor TensorRT.
"""

from trm_edge.runtimes.interface import Runtime
from trm_edge.runtimes.model_source import ModelSource
from trm_edge.runtimes.recurrence import Recurrence
from trm_edge.runtimes.recursion import DEFAULTS, Recursion
from trm_edge.runtimes.registry import RUNTIMES, available_runtimes, get_runtime
from trm_edge.runtimes.solver import SolveOutput, Solver
from trm_edge.runtimes.sources import open_runtime, open_source

__all__ = ["DEFAULTS", "RUNTIMES", "ModelSource", "Recurrence", "Recursion", "Runtime", "SolveOutput", "Solver",
           "available_runtimes", "get_runtime", "open_runtime", "open_source"]
