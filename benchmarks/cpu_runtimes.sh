# The README's CPU performance table, side by side in one `trm-edge bench` run per model (the runs interleaved, so
# load from elsewhere hits them alike): torch eager (5M only), onnxruntime and OpenVINO on the float32 and the x86
# INT8 bundle, and OpenVINO's bf16 hint on each. Whole puzzles through the solver, no halting; `% limit` is the
# step's share of this machine's limit (runtimes/ceiling.py). The tables name the CPU.
#
#   bash benchmarks/cpu_runtimes.sh [WORK]      # WORK: scratch directory (default /tmp/trm-edge-cpu-runtimes)
#
# The shipped default (Sudoku) and maze models: 16 supervision steps at batch 1, 16 and 64 on fresh puzzles of
# their distribution. The 5M sudoku-extreme-mlp (random weights: speed does not depend on them): 2 steps at
# batch 1 and 16 (its step time is what the table compares; 16 steps would take minutes per run).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
WORK=${1:-/tmp/trm-edge-cpu-runtimes}
mkdir -p "$WORK"
RUNTIMES=(--runtime onnxruntime --runtime openvino --runtime openvino:cpu:bf16
          --runtime onnxruntime --runtime openvino --runtime openvino:cpu:bf16)

bundles() {  # MODEL NAME [DATA]: the float32 and x86 INT8 bundles of MODEL under $WORK/NAME and $WORK/NAME-int8
  local model=$1 name=$2 calib=(--calib-task sudoku --calib-n 32)
  if [ $# -gt 2 ]; then calib=(--calib "$3" --calib-n 64); fi
  [ -d "$WORK/$name" ] || $BIN/trm-edge export "$model" --target x86-avx512 -o "$WORK/$name" --force
  [ -d "$WORK/$name-int8" ] || $BIN/trm-edge quantize "$WORK/$name" --int8 "${calib[@]}" --eval-n 0 --no-report \
    -o "$WORK/$name-int8" --force
}

for model in default maze; do
  [ -d "$WORK/$model-data" ] || $BIN/trm-edge data build --like "$model" -o "$WORK/$model-data" --train 64 \
    --test 64 --seed 2026 --force
  bundles "$model" "$model" "$WORK/$model-data"
done
[ -d "$WORK/5m-ckpt" ] || $BIN/trm-edge init --preset sudoku-extreme-mlp -o "$WORK/5m-ckpt" --force
bundles "$WORK/5m-ckpt" 5m

for model in default maze; do
  $BIN/trm-edge bench "$WORK/$model" "$WORK/$model" "$WORK/$model" "$WORK/$model-int8" "$WORK/$model-int8" \
    "$WORK/$model-int8" "${RUNTIMES[@]}" --data "$WORK/$model-data" --batch 1 --batch 16 --batch 64 --no-halt \
    --repeats 5 --json > "$WORK/$model.json"
done
$BIN/trm-edge bench "$WORK/5m-ckpt" "$WORK/5m" "$WORK/5m" "$WORK/5m" "$WORK/5m-int8" "$WORK/5m-int8" \
  "$WORK/5m-int8" --runtime torch "${RUNTIMES[@]}" --batch 1 --batch 16 --max-steps 2 --no-halt --repeats 3 \
  --json > "$WORK/5m.json"
$BIN/python benchmarks/runtime_table.py --from-json "$WORK/default.json" "$WORK/maze.json" "$WORK/5m.json"
