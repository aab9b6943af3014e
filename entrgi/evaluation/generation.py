"""Greedy generation with the top log-probabilities of every new token, for the model judges.

LMUnit reads its score from the probabilities of the digit tokens where the score is written, and the
pairwise judge reads its verdict from the first words of the reply; both only need a few greedy tokens.
Two backends with one interface: transformers (batched, left-padded; any device) and vLLM (when it
is installed; tensor parallelism).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from entrgi.errors import ConfigError
from entrgi.models.loading import from_pretrained, resolve_device, resolve_dtype


@dataclass
class Reply:
    """A judge model's greedy reply to one conversation."""

    text: str
    tokens: list[str]  # each new token decoded on its own
    top_logprobs: list[dict[str, float]]  # per new token: the most likely tokens (decoded) and their log-probabilities


class ChatGenerator:
    """What both backends share: the chat template and the sequence count (``forwards``: one per input)."""

    tokenizer = None
    forwards = 0

    def chat_texts(self, conversations: list[list[dict]]) -> list[str]:
        """Each conversation through the tokenizer's chat template, ending in the assistant's generation prompt."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"the judge model {self.path!r} has no chat template; use an instruct (chat) model "
                              f"as eval_reward.path")
        return [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                for c in conversations]


class TransformersGenerator(ChatGenerator):
    def __init__(self, path: str, device: str = "auto", dtype: str = "auto", max_new_tokens: int = 10,
                 top_logprobs: int = 20, batch_size: int = 8, trust_remote_code: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path, self.max_new_tokens, self.top_logprobs, self.batch_size = path, max_new_tokens, top_logprobs, batch_size
        device_ = resolve_device(device)
        self.tokenizer = from_pretrained(AutoTokenizer, path, "eval_reward", trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"  # new tokens follow every prompt directly
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = from_pretrained(AutoModelForCausalLM, path, "eval_reward", dtype=resolve_dtype(dtype, device_),
                                     trust_remote_code=trust_remote_code).to(device_).eval()
        eos = self.model.generation_config.eos_token_id  # an id, a list of ids, or None
        eos = [*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id]
        self.eos_ids = {t for t in eos if t is not None}

    @torch.no_grad()
    def generate(self, texts: list[str]) -> list[Reply]:
        from transformers import GenerationConfig

        # plain greedy: generate fills every unset field from the checkpoint's generation config (Qwen2.5's
        # sets a repetition penalty and sampling), so each one that would change the tokens is set here
        config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, temperature=1.0, top_p=1.0,
                                  top_k=50, max_new_tokens=self.max_new_tokens, eos_token_id=sorted(self.eos_ids),
                                  pad_token_id=self.tokenizer.pad_token_id, output_logits=True,
                                  return_dict_in_generate=True)
        replies = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                                   add_special_tokens=False).to(self.model.device)
            out = self.model.generate(**batch, generation_config=config)
            self.forwards += len(batch["input_ids"])
            new = out.sequences[:, batch["input_ids"].shape[1]:].tolist()
            # raw logits, as vLLM reports log-probabilities before any processing
            top = torch.stack(out.logits, dim=1).float().log_softmax(-1).topk(self.top_logprobs, dim=-1)
            for ids, values, indices in zip(new, top.values.tolist(), top.indices.tolist()):
                length = next((i + 1 for i, t in enumerate(ids) if t in self.eos_ids), len(ids))
                replies.append(self._reply(ids[:length], values[:length], indices[:length]))
        return replies

    def _reply(self, ids: list[int], values: list[list[float]], indices: list[list[int]]) -> Reply:
        decode = self.tokenizer.decode
        return Reply(text=decode(ids, skip_special_tokens=True), tokens=[decode([t]) for t in ids],
                          top_logprobs=[{decode([i]): v for i, v in zip(row_ids, row)}
                                        for row_ids, row in zip(indices, values)])


class VLLMGenerator(ChatGenerator):
    def __init__(self, path: str, dtype: str = "auto", max_new_tokens: int = 10, top_logprobs: int = 20,
                 tensor_parallel_size: int = 1, trust_remote_code: bool = False):
        from vllm import LLM, SamplingParams

        self.path = path
        local = Path(path).expanduser()
        dtype = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)
        self.llm = LLM(model=str(local) if local.exists() else path, tensor_parallel_size=tensor_parallel_size,
                       dtype=dtype, trust_remote_code=trust_remote_code)
        self.tokenizer = self.llm.get_tokenizer()
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, logprobs=top_logprobs)

    def generate(self, texts: list[str]) -> list[Reply]:
        outputs = self.llm.generate(texts, self.sampling, use_tqdm=False)
        self.forwards += len(texts)
        decode = self.tokenizer.decode
        return [Reply(text=o.outputs[0].text, tokens=[decode([t]) for t in o.outputs[0].token_ids],
                           top_logprobs=[{lp.decoded_token: lp.logprob for lp in position.values()}
                                         for position in o.outputs[0].logprobs])
                for o in outputs]


def vllm_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("vllm") is not None


def backend_of(cfg) -> str:
    """``cfg.backend``: ``transformers``, ``vllm``, or ``auto`` (vLLM when it is installed and a GPU is visible,
    else transformers)."""
    backend = cfg.get("backend", "auto")
    if backend == "auto":
        return "vllm" if vllm_installed() and torch.cuda.is_available() else "transformers"
    if backend == "vllm" and not vllm_installed():
        raise ConfigError("eval_reward.backend=vllm needs vLLM: pip install vllm (on a GPU machine), "
                          "or set eval_reward.backend=transformers")
    if backend not in ("transformers", "vllm"):
        raise ConfigError(f"unknown eval_reward.backend={backend!r}; use auto, transformers or vllm")
    return backend


def make_generator(cfg, device: str = "auto", dtype: str = "auto") -> ChatGenerator:
    """The generator of the judge model ``cfg.path``, on the backend ``backend_of(cfg)``, loaded once."""
    common = {"max_new_tokens": cfg.max_new_tokens, "top_logprobs": cfg.get("top_logprobs", 20),
              "trust_remote_code": cfg.get("trust_remote_code", False)}
    if backend_of(cfg) == "vllm":
        return VLLMGenerator(cfg.path, dtype, tensor_parallel_size=cfg.get("tensor_parallel_size", 1), **common)
    return TransformersGenerator(cfg.path, device, dtype, batch_size=cfg.get("batch_size", 8), **common)
