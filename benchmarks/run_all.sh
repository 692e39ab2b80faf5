#!/usr/bin/env bash
# Runs every benchmark and writes its output, each command first, to benchmarks/results/.
# The README cites these files. Run it on an otherwise idle machine: a concurrent job (tests, a
# training run) on the same cores changes every figure.
#
#   MOBILEVIT_DATA_DIR=../shared/data bash benchmarks/run_all.sh     (or: make benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RESULTS=benchmarks/results
export TF_CPP_MIN_LOG_LEVEL=2
mkdir -p "$RESULTS"

run() {  # run <results name> <script> [arguments...]
  local out="$RESULTS/$1.txt"; shift
  { echo "\$ ${KERAS_BACKEND:+KERAS_BACKEND=$KERAS_BACKEND }python benchmarks/$*"
    "$PY" "benchmarks/$@"; echo; } >>"$out"
}

rm -f "$RESULTS"/{train_throughput,fit_throughput,input_pipeline,tflite_latency,backend_ops,variants_train_throughput,layouts_train_throughput}.txt
run train_throughput train_throughput.py --profile
run train_throughput train_throughput.py --stock-batchnorm --profile
run train_throughput train_throughput.py --batch-size 256
run train_throughput train_throughput.py --strides 1 1 1 2 2 2
run train_throughput train_throughput.py --dtype-policy mixed_bfloat16
run train_throughput train_throughput.py --jit-compile
KERAS_BACKEND=torch run train_throughput train_throughput.py
KERAS_BACKEND=jax run train_throughput train_throughput.py
for backend in tensorflow jax torch; do KERAS_BACKEND=$backend run backend_ops backend_ops.py; done
run fit_throughput fit_throughput.py ${MOBILEVIT_DATA_DIR:+--data-dir "$MOBILEVIT_DATA_DIR"}
run input_pipeline input_pipeline.py --augmentation light
run input_pipeline input_pipeline.py --augmentation strong
run tflite_latency tflite_latency.py --run-dir checkpoints/mobilevit_xxs_cifar10
"$PY" benchmarks/variants.py   # writes variants.csv and variants.md itself
for variant in xxs_cifar xxs_cifar_p1 xxs_cifar_v3 xxs_cifar_dynconv xxs_cifar_rebalanced v2_050_cifar; do
  run variants_train_throughput train_throughput.py --variant "$variant"
done
# The speeds that set the equal-time ablations' epochs (benchmarks/ablations.py), in one sitting.
for variant in xxs_cifar v2_050_cifar v2_075_cifar xxs_cifar_rebalanced; do
  run layouts_train_throughput train_throughput.py --variant "$variant"
done
echo "Results written to $RESULTS/"
