#!/usr/bin/env bash
# The round-throughput figures on an accelerator, in one run: our round
# against fedjax's FedAvg for mlp, conv and resnet18 at 100 clients a round,
# and mlp and conv at 1,000 clients a round on the one device.
#
# Written for a lent GPU machine that holds jax, flax, optax, chex and orbax
# but not fedjax (whose haiku models the benchmark runs) and cannot fetch
# anything. Here, once, download fedjax and the two packages it needs that
# such a machine lacks (pure-Python wheels) into .whl/ (git ignores it):
#
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl \
#       fedjax==0.0.17 dm-haiku==0.0.17 jmp==0.0.4
#
# then run this script there with .whl carried beside the working tree:
#
#   bash benchmarks/device_check.sh             # results under $OUT
#
# It installs the wheels into /tmp/site, runs src/ from the tree (no
# install), and writes the device's name and the JSON rows to $OUT
# (benchmarks/results when unset). Extra arguments go to every
# round_throughput.py call: here, on a CPU, `PY=.venv/bin/python bash
# benchmarks/device_check.sh --models=mlp --clients=10 --rounds=2` runs the
# same steps at a smaller size.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
if compgen -G '.whl/*.whl' > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" -c 'import jax; print(jax.__version__, jax.devices())' | tee "$OUT/device.txt"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    | tee -a "$OUT/device.txt"
fi
"$PY" benchmarks/round_throughput.py --models=mlp,conv,resnet18 --clients=100 \
  --out="$OUT/round_throughput_device.json" "$@"
"$PY" benchmarks/round_throughput.py --models=mlp,conv --clients=1000 \
  --rounds=3 --out="$OUT/round_throughput_device_1000.json" "$@"
