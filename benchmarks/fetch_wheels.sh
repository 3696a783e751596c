#!/usr/bin/env bash
# Downloads, into .whl/ (git-ignored), the wheels that benchmarks/device_check.sh
# installs on a GPU machine that reaches no package registry. That machine
# already has jax (CUDA), flax, optax, orbax-checkpoint, torch, numpy, scipy,
# scikit-image, scikit-learn, pillow, matplotlib, tensorboard and pytest; what
# it lacks is listed here at the versions of constraints.txt. Run it from the
# repository's root on a machine with registry access (any OS or processor:
# the wheels are chosen for CPython 3.12 on x86-64 Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(array_record constriction dm-tree dm_pix docstring_parser
  googleapis-common-protos grain immutabledict importlib_resources
  ml_collections portpicker promise pypng simple-parsing tensorboardX
  tensorflow-datasets tensorflow-metadata termcolor toml bjontegaard)
PINNED=()
for name in "${PACKAGES[@]}"; do
  line=$(grep -i -E "^${name//[-_]/[-_]}==" constraints.txt) || {
    echo "fetch_wheels: $name is not pinned in constraints.txt" >&2; exit 1; }
  PINNED+=("$line")
done
mkdir -p .whl
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
for spec in "${PINNED[@]}"; do
  if ! python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${PLATFORMS[@]}" -d .whl "$spec" 2>/dev/null; then
    # A source-only package (pure Python): build its wheel here.
    python3 -m pip wheel -q --no-deps -w .whl "$spec"
  fi
done
ls .whl
