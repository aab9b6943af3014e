"""Dream-v0-Instruct-7B and the checkpoints trained from it: the Qwen2 architecture run bidirectionally,
logits shifted right by one (position i is predicted from the output at i - 1).

Dream-Coder-v0-Instruct-7B ships the same files and conventions (``loader: dream``). DiffuCoder
(Apple) ships Dream's code and mask token too, but pads a response with ``<|dlm_pad|>`` after its
``<|im_end|>``: its own record, ``diffucoder``, ends a response at either.
"""

from __future__ import annotations

from dataclasses import replace

from entrgi.models.loaders import register
from entrgi.models.loaders.base import Family, without_remote_code


def dream_as_qwen2(raw: dict):
    """Dream's config as a Qwen2 config: same fields; its own model type and remote-code map dropped.

    Sliding-window attention stays off, as Dream runs it (its config carries Qwen2's window size).
    """
    from transformers import Qwen2Config

    return Qwen2Config(**{**without_remote_code(raw), "use_sliding_window": False,
                          "architectures": ["Qwen2ForCausalLM"]})


DREAM = register(Family(
    name="dream", label="Dream", architectures=("DreamModel",),
    required=("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"),
    network="Qwen2ForCausalLM", translate=dream_as_qwen2, shift_logits=True, mask_token="<|mask|>",
    eos_tokens=("<|im_end|>", "<|endoftext|>"),
    tokenizer="Qwen2TokenizerFast",  # Dream's tokenizer is Qwen2's under a remote-code class name
))

DIFFUCODER = register(replace(DREAM, name="diffucoder", label="DiffuCoder",
                              eos_tokens=("<|im_end|>", "<|dlm_pad|>")))
