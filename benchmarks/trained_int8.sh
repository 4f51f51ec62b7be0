#!/bin/bash
# INT8 accuracy of a trained model on fresh puzzles, both INT8 formats and --attention-int8, one run.
#   bash benchmarks/trained_int8.sh MODEL CALIB_DATA FRESH_DATA OUT
# e.g. bash benchmarks/trained_int8.sh runs/maze/model data/maze9 data/maze-fresh /tmp/maze-int8
# (fresh puzzles: trm-edge data build --like MODEL -o FRESH_DATA --train 0 --test 2000 --seed 2026).
# Prints: exact accuracy, difference to fp32, answers equal to fp32's, fp32-solved puzzles still solved.
# EVAL_FLAGS=--halt evaluates with the model's halting (default: --no-halt, all 16 supervision steps).
set -euo pipefail
MODEL=$1 CALIB=$2 FRESH=$3 OUT=$4
EVAL_FLAGS=${EVAL_FLAGS:---no-halt}
T=.venv/bin/trm-edge
mkdir -p "$OUT"
for target in x86-avx512 jetson-orin-nano; do
  $T export "$MODEL" --target $target -o "$OUT/$target" --force > /dev/null
done
quantize() { $T quantize "$OUT/$1" --int8 "${@:3}" --calib "$CALIB" --calib-n 64 --eval-n 0 --no-report -o "$OUT/$2" \
  --force --json > "$OUT/q-$2.json"; }
quantize x86-avx512 x86-int8
quantize jetson-orin-nano jetson-int8
quantize x86-avx512 x86-int8-att --attention-int8
BUNDLES="x86-avx512 x86-int8 jetson-int8 x86-int8-att"
for b in $BUNDLES; do
  $T eval "$OUT/$b" --data "$FRESH" --batch 64 $EVAL_FLAGS --save-preds "$OUT/$b.npy" --json > "$OUT/eval-$b.json"
done
$T eval "$OUT/x86-avx512" --data "$FRESH" --batch 64 --max-steps 1 --no-halt --json > "$OUT/eval-1step.json"
$T bench "$OUT/x86-avx512" "$OUT/x86-int8" "$OUT/jetson-int8" --data "$FRESH" --batch 16 --no-halt --repeats 3 \
  --json > "$OUT/bench.json"
.venv/bin/python - "$OUT" "$FRESH" $BUNDLES <<'PY'
import json
import sys

import numpy as np

from trm_edge.puzzles.examples import read_examples
from trm_edge.runtimes.accuracy import accuracy

out, fresh, *bundles = sys.argv[1:]
examples = read_examples(fresh, "test")
reference = np.load(f"{out}/{bundles[0]}.npy")
solved = accuracy(reference, examples.labels, examples.ignore_label_id)[0]
one_step = json.load(open(f"{out}/eval-1step.json"))["exact_accuracy"]
print(f"{len(examples)} puzzles; fp32 at 1 step: {100 * one_step:.2f}%")
print("| bundle | exact | vs fp32 (points) | same answer as fp32 | fp32-solved still solved |")
for name in bundles:
    preds = np.load(f"{out}/{name}.npy")
    exact = accuracy(preds, examples.labels, examples.ignore_label_id)[0]
    same = np.all(preds == reference, axis=-1).mean()
    kept = (solved & exact).sum()
    print(f"| {name} | {100 * exact.mean():.2f}% | {100 * (exact.mean() - solved.mean()):+.2f} | {100 * same:.1f}% "
          f"| {100 * kept / max(solved.sum(), 1):.1f}% ({kept}/{solved.sum()}) |")
PY
