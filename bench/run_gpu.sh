#!/usr/bin/env bash
# The GPU run behind bench/RESULTS.md: the `gpu` tests, then the benchmark, on the lent machine.
# Usage (from the repo root, with the wheels the machine lacks in .whl/): bash bench/run_gpu.sh OUT_DIR
set -u
out=${1:-/tmp/voxtral-bench}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/machine.txt"
python3 -c 'import torch, triton, transformers; print("torch", torch.__version__, "triton", triton.__version__, "transformers", transformers.__version__)' | tee -a "$out/machine.txt"
timeout 450 python3 -m pytest tests/test_gpu.py tests/test_triton_q4.py -q -p no:cacheprovider -s 2>&1 | tee "$out/gpu_tests.log"
timeout 540 python3 -m voxtral_desktop bench ${BENCH_ARGS:---steps 1000 --file-seconds 300 --segment-seconds 30 --segment-batch 8 --batch-files 256 512 768 --batch-seconds 60 --compare transformers} \
  --json "$out/bench.json" 2>&1 | tee "$out/bench.log"
