"""Why parity is tested step by step: a random-weight TRM run in float32 and float64 from the same state drifts
apart. Prints, per supervision step, the largest relative difference of z_H and the share of cells whose predicted
token differs (docs/design.md, "Numerics"; the figures are in docs/results.md).

    .venv/bin/python benchmarks/random_chaos.py --preset sudoku-mini --puzzles 64
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch

from trm_edge.config import get_preset
from trm_edge.trm.model import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sudoku-mini")
    parser.add_argument("--puzzles", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = get_preset(args.preset).model
    single = build_model(config, seed=args.seed).eval()
    double = copy.deepcopy(single).double()
    inputs = torch.from_numpy(np.random.default_rng(args.seed).integers(1, config.vocab_size,
                                                                         (args.puzzles, config.seq_len)))
    states = [single.initial_state(args.puzzles), tuple(z.double() for z in double.initial_state(args.puzzles))]
    print(f"{args.preset}, random weights (seed {args.seed}), {args.puzzles} random puzzles: float32 vs float64")
    print("step  max rel. diff z_H  cells predicted differently")
    with torch.no_grad():
        for step in range(1, args.steps + 1):
            z_H, z_L, logits, _ = single.step(inputs, *states[0])
            z_H64, z_L64, logits64, _ = double.step(inputs, *states[1])
            states = [(z_H, z_L), (z_H64, z_L64)]
            rel = float((z_H.double() - z_H64).abs().max() / z_H64.abs().max())
            cells = float((logits.argmax(-1) != logits64.argmax(-1)).double().mean())
            print(f"{step:4d}  {rel:17.1e}  {cells:26.1%}")


if __name__ == "__main__":
    main()
