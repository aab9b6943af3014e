"""The tiny stack's tokenizer and architectures, and a random-weight build of it.

Deterministic and offline: the tokenizer is a byte-level BPE trained on CPython's own
documentation (PSF licence, the held-out benchmark's functions excluded), the models are
initialized from a fixed seed. ``entrgi.testbed.recipe`` trains them into the shipped default;
this script alone writes the untrained stack (a code-path fixture, not a useful model):

    python -m entrgi.testbed.build --out /tmp/tiny-random
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from entrgi.testbed.corpus import held_out_prompts, training_sentences

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def corpus_texts() -> list[str]:
    """Documentation text from the standard library, in a fixed order; no held-out function's text."""
    from pydoc_data.topics import topics

    texts = [topics[k] for k in sorted(topics)]
    texts += [f"{name}: {sentence}" for name, sentence in training_sentences()]
    return texts


def build_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_texts(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", mask_token="<|mask|>",
        chat_template=CHAT_TEMPLATE, model_max_length=512,
    )


def build_models(tokenizer, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForSequenceClassification

    vocab = len(tokenizer)
    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    dllm = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, **ids))
    torch.manual_seed(seed + 1)
    reward = Qwen3ForSequenceClassification(Qwen3Config(
        vocab_size=vocab, hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=512, num_labels=1, **ids))
    return dllm, reward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tokenizer = build_tokenizer(args.vocab_size)
    dllm, reward = build_models(tokenizer, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    prompts = args.out / "tiny-prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in held_out_prompts()))
    print(f"wrote {prompts}")
    for name, model in (("tiny-dllm", dllm), ("tiny-reward", reward)):
        out = args.out / name
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        print(f"wrote {out} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters)")


if __name__ == "__main__":
    main()
