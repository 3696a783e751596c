#!/usr/bin/env bash
# The model zoo on one GPU, as one prepared command of at most 9 minutes on
# a machine that has jax (CUDA), flax, optax, orbax-checkpoint and torch but
# reaches no package registry. It trains every recipe of experiments/zoo.py
# with its GPU steps (about 6 minutes of training in all), scores
# each on the carried test sets, times every architecture against its
# PyTorch twin (images/s and the fraction of the card's peak FLOP/s), and
# leaves the weights, manifest.json, zoo.md and train_speed.md in OUT.
#
#   benchmarks/zoo_gpu.sh --prepare       # here: .whl/ and .zoodata/
#   benchmarks/zoo_gpu.sh OUT             # there, from the repo's root
#   benchmarks/zoo_gpu.sh --dry_run OUT   # any CPU: every recipe, tiny
#
# --prepare (registry access, ../shared beside the checkout) fetches the
# wheels (benchmarks/fetch_wheels.sh) and copies into .zoodata/ (git-ignored)
# what the recipes read: T91, CBSD432, Set5, Set14 and the first six Kodak24
# images (the carried tree stays under the device tool's 64 MiB). Run it with
# run(command='benchmarks/zoo_gpu.sh $OUT', carry=['.whl', '.zoodata']).
# Weights that beat the shipped CPU ones replace them with
#   python -m experiments.zoo adopt --from=OUT/weights --only=NAME
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  benchmarks/fetch_wheels.sh
  rm -rf .zoodata && mkdir -p .zoodata/trainsets .zoodata/testsets/Kodak24
  cp -r ../shared/trainsets/T91 ../shared/trainsets/CBSD432 .zoodata/trainsets/
  cp -r ../shared/testsets/Set5 ../shared/testsets/Set14 .zoodata/testsets/
  ls ../shared/testsets/Kodak24/* | sort | head -6 | xargs -I{} cp {} .zoodata/testsets/Kodak24/
  du -sh .whl .zoodata
  exit 0
fi

DRY_RUN=0
if [[ "${1:-}" == "--dry_run" ]]; then DRY_RUN=1; shift; fi
OUT=${1:?usage: benchmarks/zoo_gpu.sh [--dry_run] OUT}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
if ! "$PYTHON" -c 'import ml_collections, grain, tensorflow_datasets' 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
if (( DRY_RUN )); then
  BUDGET=(--budget=smoke --noclassical)
else
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
  BUDGET=(--budget=gpu --shared=.zoodata)
fi
# ONLY=name,name picks recipes (default: all).
timeout "${DEADLINE:-530}" "$PYTHON" -m experiments.zoo all "${BUDGET[@]}" \
  --only="${ONLY:-}" --out="$OUT" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
