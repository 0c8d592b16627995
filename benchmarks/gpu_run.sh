#!/usr/bin/env bash
# One prepared script for a lent GPU machine (see benchmarks/README.md): installs the carried
# wheels, times the default model on CUDA and runs the CV sweep (which exercises the CUDA AMP
# training path). Expects the data copied to .devdata/MSFD and the wheels in .whl (both carried).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
[ -n "${SKIP_BENCH:-}" ] || timeout 60 python3 benchmarks/bench_speed.py --device cuda --runs 5 --steps 20 2>&1 | tee "$OUT/bench_cuda.txt"
python3 benchmarks/gpu_sweep.py --data .devdata/MSFD --work /tmp/sweep --parallel 14 \
  --threads 1 --deadline "${SWEEP_SECONDS:-400}" "$@" 2>&1 | tee "$OUT/sweep.txt"
tar czf "$OUT/sweep.tgz" --exclude='*.pt' -C /tmp sweep 2>/dev/null
tail -q -n 1 /tmp/sweep/*/*/log.txt | cut -c1-160
