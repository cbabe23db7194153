#!/usr/bin/env bash
# The seed's three-model study on a GPU, and FEMNIST at paper scale, in
# commands of at most 10 minutes (the `device` tool's limit): the
# cross-silo preset on resnet18, mlp and conv with 3 seeds, then the seed's
# figure, then FATHOM's FEMNIST protocol. Each call continues where the
# last stopped (experiments/compare.py resumes its runs) and stops itself
# before STUDY_SECONDS (540) are up; call it again with the same OUT (and
# OUT carried back) until it prints `study: done`.
#
# The lent machine holds neither the data nor this project's outputs:
# copy Debian's Fashion-MNIST beside the tree (`cp -r
# /usr/share/datasets/fashion-mnist runs/fmnist`, 30 MB, ignored by git)
# and run there with carry=["runs/fmnist", "runs/device-study"]:
#
#   FMNIST_DIR=runs/fmnist bash benchmarks/device_study.sh
#
# Writes $OUT (runs/device-study): device.txt, three_models/ (table.md,
# results.json, best_acc_<model>.png, as the comparison writes them),
# seed_models.png and, with FEMNIST_DIR holding fedjax's
# federated_emnist_{train,test}.sqlite, femnist/. Extra arguments go to
# every comparison; on a CPU the same steps run at toy size:
#
#   PY=.venv/bin/python OUT=/tmp/study MODELS=mlp bash benchmarks/device_study.sh \
#       --dataset=digits --max_clients=4 --clients_per_round=4 --rounds=2 \
#       --eval_every=1 --seeds=0 --static_grid=0 --policies=gumbel
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-runs/device-study}
MODELS=${MODELS:-resnet18,mlp,conv}
DEADLINE=$(( $(date +%s) + ${STUDY_SECONDS:-540} ))
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# Hyper-parameters are traced, so the runs of a model share their programs:
# compiled once, read from this cache after.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$OUT/jax_cache}
mkdir -p "$OUT"
"$PY" -c 'import jax; print(jax.__version__, jax.devices())' > "$OUT/device.txt"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total --format=csv >> "$OUT/device.txt"
fi
cat "$OUT/device.txt"

compare() {  # compare NAME ARGS...: one comparison, stopped at the deadline
  local name=$1 left=$(( DEADLINE - $(date +%s) )) rc=0
  shift
  if (( left <= 0 )); then
    echo "study: out of time before $name; call again to continue"
    exit 0
  fi
  timeout "$left" "$PY" experiments/compare.py "$@" \
    --out_dir="$OUT/$name" || rc=$?
  if (( rc == 124 )); then
    echo "study: $name stopped at the deadline; call again to continue"
    exit 0
  fi
  return "$rc"
}

compare three_models --config=experiments/configs/cross_silo.toml \
  --models="$MODELS" --seeds=0,1,2 ${FMNIST_DIR:+--data_dir="$FMNIST_DIR"} "$@"
"$PY" experiments/seed_models.py --results="$OUT/three_models/results.json" \
  --models="$MODELS" --out="$OUT/seed_models.png"
if [[ -n "${FEMNIST_DIR:-}" ]]; then
  compare femnist --config=experiments/configs/femnist_cross_device.toml \
    --data_dir="$FEMNIST_DIR" "$@"
else
  echo "study: FEMNIST left out: set FEMNIST_DIR to a folder holding" \
    "fedjax's federated_emnist_{train,test}.sqlite"
fi
echo "study: done"
