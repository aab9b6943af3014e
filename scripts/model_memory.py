"""Peak memory of a guided run for each registered dLLM family with each reward model, from the cost model
(entrgi.evaluation.flop_model.guidance_memory: both models' weights + a guided step's working set), as the
Markdown table of docs/models.md. Shapes are the published checkpoints' config.json fields.

    python scripts/model_memory.py  # the paper's setting: L = 128, 4 prompts x K = 4 rows, bf16
"""

from __future__ import annotations

import argparse
from types import SimpleNamespace

QWEN3 = dict(num_attention_heads=16, num_key_value_heads=8, head_dim=128)
# dLLMs: conf/model names -> (shape, vocabulary)
DLLMS = {
    "dream, dream_coder, diffucoder (7.6B)": (dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                                    num_attention_heads=28, num_key_value_heads=4), 152064),
    "llada, llada_1.5 (8.0B)": (dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=32,
                                     num_attention_heads=32, num_key_value_heads=32), 126464),
    "llada_moe (7.4B, 1.4B active)": (dict(hidden_size=2048, intermediate_size=8192, moe_intermediate_size=1024,
                                           num_experts=64, num_experts_per_tok=8, num_hidden_layers=16,
                                           num_attention_heads=16, num_key_value_heads=16), 157184),
    "llada2_mini, llada2.1_mini (16.3B, 1.4B active)": (dict(hidden_size=2048, intermediate_size=5120, moe_intermediate_size=512,
                                              num_experts=256, num_experts_per_tok=8, num_shared_experts=1,
                                              first_k_dense_replace=1, num_hidden_layers=20, num_attention_heads=16,
                                              num_key_value_heads=4, head_dim=128), 157184),
    "sdar_1.7b": (dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, **QWEN3), 151936),
    "sdar_4b, trado_4b": (dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                               num_key_value_heads=8, head_dim=128, tie_word_embeddings=True), 151936),
    "sdar_8b, trado_8b": (dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                               num_key_value_heads=8, head_dim=128), 151936),
}
# reward models (sequence classifiers: the embeddings once, no output layer): conf/reward names -> (shape, vocabulary)
REWARDS = {
    "skywork_0.6b": (dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, **QWEN3), 151936),
    "skywork (1.7B)": (dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, **QWEN3), 151936),
    "skywork_4b": (dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=128), 151936),
    "skywork_8b": (dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=128), 151936),
    "skywork_llama_8b": (dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                              num_key_value_heads=8), 128256),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16, help="sequences per guided step (prompts x K)")
    parser.add_argument("--gen-length", type=int, default=128, help="L")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="reward prompt + chat markup tokens")
    args = parser.parse_args()

    from entrgi.evaluation.flop_model import guidance_memory

    gib = 2 ** 30
    print("| dLLM | " + " | ".join(REWARDS) + " |")
    print("|---|" + "---|" * len(REWARDS))
    for dllm, (shape, vocab) in DLLMS.items():
        cells = []
        for reward_shape, reward_vocab in REWARDS.values():
            memory = guidance_memory(SimpleNamespace(**shape), vocab,
                                     SimpleNamespace(**reward_shape, tie_word_embeddings=True), reward_vocab,
                                     args.rows, args.gen_length, args.prompt_tokens + args.gen_length)
            cells.append(f"{memory['total'] / gib:.0f} GiB")
        print(f"| {dllm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
