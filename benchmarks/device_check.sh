#!/usr/bin/env bash
# The accelerator checks, as one prepared run on a machine with one NVIDIA
# GPU that has jax (CUDA), flax, optax, orbax-checkpoint and torch but reaches
# no package registry. Within about 8 minutes (DEADLINE) it:
#   1. installs the other packages from the wheels carried in .whl/;
#   2. trains DnCNN at sigma 25 on CBSD432 (batches made on the device,
#      bfloat16) for about TRAIN_SECONDS and prints the Kodak24 PSNR it
#      reached and the minutes it took (dncnn.json);
#   3. runs the tests that exercise the accelerator paths (batches made on
#      the device, bfloat16 steps; .aec files written on the CPU decode to
#      the same latents on the GPU) and times the codec;
#   4. times the training step against PyTorch (benchmarks/train_speed.py:
#      train_speed.md, train_speed_more.md) and the input pipelines against
#      the step (benchmarks/pipeline_speed.py: pipeline_speed.md).
# Everything is logged to OUT/log.txt; a failing step is reported and the
# next one runs; steps left at the deadline are skipped and reported.
#
#   benchmarks/device_check.sh --prepare        # here: .whl/ and .devdata/
#   benchmarks/device_check.sh OUT              # there, from the repo's root
#   benchmarks/device_check.sh --dry_run OUT    # any CPU: every step, tiny
#
# --prepare (on a machine with registry access, ../shared beside the
# checkout) downloads the wheels (benchmarks/fetch_wheels.sh) and copies
# CBSD432 and Kodak24 into .devdata/ (git-ignored; about 47 MB), which the
# device tool carries: run(command='benchmarks/device_check.sh $OUT',
# carry=['.whl', '.devdata']).
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
  set -e
  benchmarks/fetch_wheels.sh
  rm -rf .devdata && mkdir -p .devdata
  cp -r ../shared/trainsets/CBSD432 ../shared/testsets/Kodak24 .devdata/
  du -sh .whl .devdata
  exit 0
fi

DRY_RUN=0
if [[ "${1:-}" == "--dry_run" ]]; then DRY_RUN=1; shift; fi
OUT=${1:?usage: benchmarks/device_check.sh [--dry_run] OUT}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
PYTHON=${PYTHON:-python3}
TRAIN_SECONDS=${TRAIN_SECONDS:-180}
DEADLINE=${DEADLINE:-470}
export PYTHONUNBUFFERED=1
declare -a FAILED=() SKIPPED=()

step() {  # step NAME COMMAND...: runs it, logs it, remembers a failure;
  # stopped at the deadline (DEADLINE seconds after the start), skipped
  # when less than 20 s are left.
  local name=$1; shift
  local left=$((DEADLINE - SECONDS))
  if (( left < 20 )); then
    echo "=== $name: skipped, out of time" | tee -a "$LOG"
    SKIPPED+=("$name")
    return 0
  fi
  echo "=== $name: $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$left" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: rc $rc in $((SECONDS - start)) s" | tee -a "$LOG"
  [[ $rc == 0 ]] || FAILED+=("$name")
  return 0
}

# 1. The packages the machine lacks, from the carried wheels.
if ! "$PYTHON" -c 'import ml_collections, grain, tensorflow_datasets' 2>/dev/null; then
  step install "$PYTHON" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
step environment "$PYTHON" -c '
import jax, flax, optax
try:
  import torch
  torch_info = torch.__version__ + " " + (
      torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
except ImportError:
  torch_info = "not installed"
print("jax", jax.__version__, jax.devices(), "| flax", flax.__version__,
      "| optax", optax.__version__, "| torch", torch_info)'

if (( DRY_RUN )); then
  TESTS=(tests/test_corruptions.py -k "bicubic_equals_pil_on_numpy_and_jax and 3")
  SPEED_A=(--quick --models denoise:dncnn --skip_torch_compile)
  SPEED_B=()  # The same code as SPEED_A.
  PIPES=(--quick --configs denoise)
  BATCH=8
  RATE=(--quick --dataset=photos)
  CODEC=(--variants=mean_scale --repeats=1)
  DATA=(--config.dataset=photos --config.eval_dataset=photos)
  TRAIN=(--config.num_train_steps=6 --config.eval_every_steps=3
         --config.checkpoint_every_steps=6 --config.log_every_steps=2
         --config.optimizer.warmup_steps=2 --config.model.depth=4
         --config.model.width=8)
else
  # On the GPU itself (not 8 simulated CPU devices as in CI).
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
  TESTS=(tests/test_device_data.py tests/test_corruptions.py tests/test_task_contracts.py tests/test_steps.py -k "not pmap")
  # torch.compile takes tens of seconds per model: for the reference
  # models; the others without it.
  SPEED_A=(--models denoise:dncnn,super_resolution,super_resolution:edsr
           --batch 64 --steps 30)
  SPEED_B=(--models denoise,denoise:ffdnet,colorize:photos,unet
           --batch 64 --steps 30 --skip_torch_compile)
  PIPES=(--configs "denoise:dncnn;super_resolution:edsr" --batch 64
         --dataset=folder:.devdata/CBSD432)
  BATCH=128
  RATE=(--dataset=folder:.devdata/CBSD432)
  CODEC=(--images=folder:.devdata/Kodak24 --repeats=3)
  DATA=(--config.dataset=folder:.devdata/CBSD432
        --config.eval_dataset=folder:.devdata/Kodak24)
  TRAIN=()
fi

# 2. DnCNN sigma 25 on CBSD432 for about TRAIN_SECONDS: the number of steps
# comes from the measured speed of this config's step with its batches.
RATE_JSON="$OUT/dncnn_rate.json"
step dncnn_rate "$PYTHON" benchmarks/pipeline_speed.py \
  --configs denoise:dncnn --batch $BATCH --compute_dtype bfloat16 \
  --columns device+step "${RATE[@]}" --json "$RATE_JSON"
STEPS=$("$PYTHON" -c "
import json
rate = json.load(open('$RATE_JSON'))[0]['device+step']
print(max(100, int(0.9 * rate * $TRAIN_SECONDS / $BATCH) // 100 * 100))" 2>/dev/null || echo 2000)
echo "DnCNN: $STEPS steps of $BATCH patches for about $TRAIN_SECONDS s" | tee -a "$LOG"
WORKDIR=${WORKDIR:-$OUT/dncnn_run}
rm -rf "$WORKDIR"
step dncnn "$PYTHON" -m ae_research.main \
  --config=configs/denoise.py:dncnn \
  --workdir="$WORKDIR" "${DATA[@]}" --config.batch_size=$BATCH \
  --config.compute_dtype=bfloat16 --config.input_pipeline=device \
  --config.num_train_steps="$STEPS" --config.eval_every_steps=$((STEPS / 2)) \
  --config.checkpoint_every_steps="$STEPS" \
  --config.log_every_steps=$((STEPS / 20 + 1)) --config.eval_classical=False \
  --config.optimizer.learning_rate=1e-3 "${TRAIN[@]}"
step dncnn_result "$PYTHON" -c "
import json
from ae_research import train
m = json.load(open('$WORKDIR/metrics.json'))
h = train.read_history('$WORKDIR')
result = {'steps': m['step'], 'batch': $BATCH,
          'train_minutes': round(h[-1]['train_minutes'], 2),
          'psnr': m['model']['psnr'], 'ssim': m['model']['ssim'],
          'noisy_psnr': m['baseline']['psnr'],
          'history': [(r['step'], round(r['train_minutes'], 2),
                       round(r['psnr'], 2)) for r in h]}
json.dump(result, open('$OUT/dncnn.json', 'w'))
print(json.dumps(result))"
rm -rf "$WORKDIR/checkpoints" "$WORKDIR/tensorboard"  # Keeps OUT small.

# 3. The tests of the accelerator paths.
step tests "$PYTHON" -m pytest -q -x -p no:cacheprovider "${TESTS[@]}"

# The codec: files written on the CPU decode to the same latents on the
# GPU (format version 5's integer hyper synthesis through XLA); its speed.
step codec_same_latents "$PYTHON" -m pytest -q -x -p no:cacheprovider tests/test_codec.py \
  -k same_latent_under_other_configurations
step codec_speed "$PYTHON" benchmarks/codec_speed.py "${CODEC[@]}"

# 4. The step against PyTorch; the pipelines against the step.
step train_speed "$PYTHON" benchmarks/train_speed.py "${SPEED_A[@]}" \
  --markdown "$OUT/train_speed.md"
step pipeline_speed "$PYTHON" benchmarks/pipeline_speed.py "${PIPES[@]}" \
  --markdown "$OUT/pipeline_speed.md"
if (( ${#SPEED_B[@]} )); then
  step train_speed_more "$PYTHON" benchmarks/train_speed.py "${SPEED_B[@]}" \
    --markdown "$OUT/train_speed_more.md"
fi

if (( ${#SKIPPED[@]} )); then
  echo "device_check: skipped (out of time): ${SKIPPED[*]}" | tee -a "$LOG"
fi
if (( ${#FAILED[@]} )); then
  echo "device_check: FAILED steps: ${FAILED[*]}" | tee -a "$LOG"
  exit 1
fi
echo "device_check: every step passed" | tee -a "$LOG"
