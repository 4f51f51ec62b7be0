# Issue 13's table, re-measured with trm-edge itself: onnxruntime and OpenVINO on the float32 and the x86 INT8
# bundle, and OpenVINO's bf16 hint on the float32 one, side by side in one `trm-edge bench` run per model (the
# five runs interleaved, so load from elsewhere hits them alike). Whole puzzles through the solver, no halting.
#
#   bash benchmarks/cpu_runtimes.sh [WORK]      # WORK: scratch directory (default /tmp/trm-edge-cpu-runtimes)
#
# The default model: 16 supervision steps at batch 1 and 16 on fresh puzzles of its distribution. The 5M
# sudoku-extreme-mlp (random weights: speed does not depend on them): 2 steps at batch 16 (its step time is
# what the table compares; 16 steps would take minutes per run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${1:-/tmp/trm-edge-cpu-runtimes}
mkdir -p "$WORK"
RUNTIMES=(--runtime onnxruntime --runtime openvino --runtime onnxruntime --runtime openvino
          --runtime openvino:cpu:bf16)

if [ ! -d "$WORK/default-int8" ]; then
  $BIN/trm-edge data build --like default -o "$WORK/sudoku" --train 64 --test 64 --seed 2026 --force
  $BIN/trm-edge export default --target x86-avx512 -o "$WORK/default" --force
  $BIN/trm-edge quantize "$WORK/default" --int8 --calib "$WORK/sudoku" --calib-n 64 --eval-n 0 --no-report \
    -o "$WORK/default-int8" --force
fi
if [ ! -d "$WORK/5m-int8" ]; then
  $BIN/trm-edge init --preset sudoku-extreme-mlp -o "$WORK/5m-ckpt" --force
  $BIN/trm-edge export "$WORK/5m-ckpt" --target x86-avx512 -o "$WORK/5m" --force
  $BIN/trm-edge quantize "$WORK/5m" --int8 --calib-task sudoku --calib-n 32 --eval-n 0 --no-report \
    -o "$WORK/5m-int8" --force
fi

$BIN/trm-edge bench "$WORK/default" "$WORK/default" "$WORK/default-int8" "$WORK/default-int8" "$WORK/default" \
  "${RUNTIMES[@]}" --data "$WORK/sudoku" --batch 1 --batch 16 --no-halt --repeats 5 --json > "$WORK/default.json"
$BIN/trm-edge bench "$WORK/5m" "$WORK/5m" "$WORK/5m-int8" "$WORK/5m-int8" "$WORK/5m" \
  "${RUNTIMES[@]}" --batch 16 --max-steps 2 --no-halt --repeats 3 --json > "$WORK/5m.json"
$BIN/python benchmarks/runtime_table.py --from-json "$WORK/default.json" "$WORK/5m.json"
