#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one short run (about 3-5 minutes on an H100/H200):
# the paper's setting (Dream-v0-Instruct-7B / Skywork-Reward-V2-Qwen3-1.7B shapes, random weights, bf16,
# 4 prompts x K=4, L=128, T=128, M=3): seconds per guided step and their parts, the fraction of the
# device's bf16 peak, peak memory, and the unguided (best-of-K) generate.
#   bash scripts/gpu_bench.sh                 # JSON and logs to outputs/gpu/ (or $OUT when set)
#   COMPILE=1 bash scripts/gpu_bench.sh       # also the torch.compile'd passes (minutes more to compile)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
paper=(--preset dream-skywork --device cuda --dtype bf16 --prompts 4 --samples 4 --gen-length 128 --steps 128
       --inner-steps 3 --repeat 1)
# the paper's setting; one repeat, the per-part run, the unguided generate
timeout 420 python scripts/bench.py "${paper[@]}" --json "$out/paper.json" 2>&1 | grep -v Warning | tee "$out/paper.txt"
if [[ "${COMPILE:-0}" == 1 ]]; then
  timeout 600 python scripts/bench.py "${paper[@]}" --no-breakdown --no-unguided --compile \
      --json "$out/paper-compiled.json" 2>&1 | grep -v Warning | tee "$out/paper-compiled.txt"
fi
