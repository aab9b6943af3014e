"""The reward model: scoring text, scoring relaxed embeddings, and the bridge between vocabularies.

Any one-label ``AutoModelForSequenceClassification`` works. The guidance feeds it
``inputs_embeds = [chat prefix of the prompt | response | chat suffix]`` so gradients reach the
dLLM's logits; final scores are computed on decoded text through the reward tokenizer's own
chat template, as the reward model was trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.models.batching import left_pad
from entrgi.models.loading import from_pretrained, resolve_device, resolve_dtype

_SENTINEL = "\u2063ENTRGI_RESPONSE\u2063"
UNMATCHED = ("unk", "zero", "retokenize")


@dataclass
class VocabularyBridge:
    """The reward model's input embeddings re-indexed into the dLLM vocabulary (``E`` in the paper).

    Counts are over the dLLM's named tokens (ids its tokenizer has a string for, less ``ignore``
    ids such as the mask token); the embedding rows past the tokenizer (padding) are not counted.
    """

    table: torch.Tensor  # [V_dllm, H]
    coverage: float  # fraction of named dLLM tokens whose string is a reward token
    represented: float  # fraction of named dLLM tokens given a row: matched, or filled by the unmatched policy
    unmatched_tokens: list[str]  # the named dLLM tokens with no reward token of the same string

    def summary(self, examples: int = 20) -> dict:
        return {"matched": self.coverage, "represented": self.represented,
                "unmatched": len(self.unmatched_tokens), "unmatched_examples": self.unmatched_tokens[:examples]}


@dataclass
class RewardContext:
    """The fixed parts of the reward model's input for a batch of rows."""

    prefix_embeds: torch.Tensor  # [N, Pp, H], left-padded
    prefix_mask: torch.Tensor  # [N, Pp]
    suffix_embeds: torch.Tensor  # [N, Ps, H], left-padded so the last column is always real
    suffix_mask: torch.Tensor  # [N, Ps]
    # Keys and values of the prefix per layer, computed once: the reward model is causal, so the
    # prefix's states do not depend on the response. None: the prefix is re-run at every score.
    prefix_cache: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None


class RewardModel:
    def __init__(self, model: torch.nn.Module, tokenizer, chat_template: str | None = None):
        self.model = model.eval().requires_grad_(False)  # only inputs get gradients
        self.tokenizer = tokenizer
        if chat_template:
            tokenizer.chat_template = chat_template
        if getattr(model.config, "num_labels", 1) != 1:
            raise ConfigError(f"reward model has {model.config.num_labels} labels; a reward model must have exactly 1")
        self.evaluations = {"forward": 0, "backward": 0}  # sequences, for cost accounting
        self._embedding_forward = self.model  # what score_embeddings runs (see compile)

    @classmethod
    def load(cls, path: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             chat_template: str | None = None) -> "RewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device_ = resolve_device(device)
        tokenizer = from_pretrained(AutoTokenizer, path, "reward", trust_remote_code=trust_remote_code)
        model = from_pretrained(AutoModelForSequenceClassification, path, "reward",
                                dtype=resolve_dtype(dtype, device_), trust_remote_code=trust_remote_code,
                                num_labels=1)
        return cls(model.to(device_), tokenizer, chat_template)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def compile(self) -> None:
        """Score embeddings (the guided inner loop, forward and backward) through ``torch.compile``.

        Off by default (see ``entrgi.sampling.fastpaths``): the compiled graph agrees with eager to fp32
        rounding, not bit for bit. It compiles once per input shape, which a run's fixed widths keep to a
        few; text scoring stays eager.
        """
        self._embedding_forward = torch.compile(self.model.forward, dynamic=False)

    @property
    def embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    def chat_ids(self, prompt: str, response: str) -> list[int]:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return list(self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))

    def prefix_suffix_ids(self, prompt: str) -> tuple[list[int], list[int]]:
        """Token ids before and after the response in the reward model's chat template."""
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": _SENTINEL}], tokenize=False)
        if text.count(_SENTINEL) != 1:
            raise ConfigError("the reward chat template does not place the response verbatim; set reward.chat_template")
        prefix, suffix = text.split(_SENTINEL)
        encode = lambda s: self.tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        return encode(prefix), encode(suffix)

    # -- the vocabulary bridge ------------------------------------------------------------------

    def bridge(self, dllm_tokenizer, vocab_size: int, unmatched: str = "retokenize",
               ignore: tuple[int, ...] = ()) -> VocabularyBridge:
        """Map each dLLM token id to a reward-model embedding, by token string.

        dLLM tokens whose string is not a reward token get, by ``unmatched``: ``unk`` the reward
        tokenizer's unknown token (an error when it has none, as Qwen3's and Llama 3's do), ``zero`` a
        zero vector, ``retokenize`` the mean embedding of the reward tokens of the token's decoded
        text. Ids past the dLLM tokenizer (embedding padding) have no string: ``unk`` gives them the
        unknown token, the other policies a zero vector.
        """
        if unmatched not in UNMATCHED:
            raise ConfigError(f"unknown reward.unmatched={unmatched!r}; choose one of {list(UNMATCHED)}")
        if unmatched == "unk" and self.tokenizer.unk_token_id is None:
            raise ConfigError("the reward tokenizer has no unknown token; set reward.unmatched=zero or retokenize")
        reward_vocab = self.tokenizer.get_vocab()
        named = min(vocab_size, len(dllm_tokenizer))
        dllm_tokens = dllm_tokenizer.convert_ids_to_tokens(list(range(named)))
        index = torch.full((vocab_size,), -1, dtype=torch.long)
        index[:named] = torch.tensor([reward_vocab.get(t, -1) if t is not None else -1 for t in dllm_tokens],
                                     dtype=torch.long)
        matched = index >= 0
        counted = torch.zeros(vocab_size, dtype=torch.bool)
        counted[:named] = True
        counted[[i for i in ignore if 0 <= i < vocab_size]] = False

        E = self.embeddings.detach()
        table = torch.zeros(vocab_size, E.shape[1], dtype=E.dtype, device=E.device)
        table[matched.to(E.device)] = E[index[matched].to(E.device)]
        represented = matched.clone()
        if unmatched == "unk":
            table[(~matched).to(E.device)] = E[self.tokenizer.unk_token_id]
            represented[:] = True
        elif unmatched == "retokenize":
            rows = ((~matched) & (torch.arange(vocab_size) < named)).nonzero().flatten().tolist()
            texts = [dllm_tokenizer.convert_tokens_to_string([dllm_tokens[i]]) if dllm_tokens[i] else "" for i in rows]
            pieces = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
            # the mean of each text's reward-token embeddings, as one scatter-add
            owner = torch.tensor([r for r, ids in zip(rows, pieces) for _ in ids], dtype=torch.long)
            flat = torch.tensor([t for ids in pieces for t in ids], dtype=torch.long)
            if len(flat):
                sums = torch.zeros(vocab_size, E.shape[1], device=E.device).index_add_(
                    0, owner.to(E.device), E[flat.to(E.device)].float())
                counts = torch.zeros(vocab_size).index_add_(0, owner, torch.ones(len(owner)))
                filled = counts > 0
                table[filled.to(E.device)] = (sums[filled.to(E.device)] / counts[filled, None].to(E.device)).to(E.dtype)
                represented |= filled

        total = counted.sum().item()
        missing = ((~matched) & counted).nonzero().flatten().tolist()
        return VocabularyBridge(table=table, coverage=(matched & counted).sum().item() / total,
                                represented=(represented & counted).sum().item() / total,
                                unmatched_tokens=[str(dllm_tokens[i]) for i in missing])

    # -- scoring --------------------------------------------------------------------------------

    def context(self, prompts: list[str], widths: tuple[int, int] = (0, 0), cache_prefix: bool = True) -> RewardContext:
        """Embeddings of the chat prefix and suffix for each row's prompt.

        ``widths`` pads prefix and suffix to at least that many columns: fixed for a run, it keeps
        a row's scores bit-identical whatever batch the row is in. ``cache_prefix`` computes the
        prefix's keys and values once, for every later :meth:`score_embeddings` of these rows.
        """
        parts = [self.prefix_suffix_ids(p) for p in prompts]
        return self.context_from_ids([p for p, _ in parts], [s for _, s in parts], widths, cache_prefix)

    @torch.no_grad()
    def context_from_ids(self, prefix_ids: list[list[int]], suffix_ids: list[list[int]],
                         widths: tuple[int, int] = (0, 0), cache_prefix: bool = True) -> RewardContext:
        """:meth:`context` from the token ids before and after each row's response."""
        prefix, prefix_mask = self._left_pad(prefix_ids, widths[0])
        suffix, suffix_mask = self._left_pad(suffix_ids, widths[1])
        embed = self.model.get_input_embeddings()
        context = RewardContext(embed(prefix), prefix_mask, embed(suffix), suffix_mask)
        if cache_prefix:
            context.prefix_cache = self._prefix_cache(context)
        return context

    def _prefix_cache(self, context: RewardContext) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        positions = (context.prefix_mask.cumsum(-1) - 1).clamp(min=0)
        self.model.base_model(inputs_embeds=context.prefix_embeds, attention_mask=context.prefix_mask,
                              position_ids=positions, past_key_values=cache, use_cache=True)
        return tuple((layer.keys, layer.values) for layer in cache.layers)

    def score_embeddings(self, context: RewardContext, response_embeds: torch.Tensor,
                         response_keep: torch.Tensor) -> torch.Tensor:
        """Scores ``[N]`` of ``[prefix | response | suffix]``; response columns with keep=0 are hidden.

        Hidden columns are masked out of attention and skipped by the position ids, so the suffix
        sits right after the kept response as it would in text.
        """
        mask = torch.cat([context.prefix_mask, response_keep.long(), context.suffix_mask], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        response_embeds = response_embeds.to(context.prefix_embeds.dtype)
        self.evaluations["forward"] += mask.shape[0]
        if response_embeds.requires_grad:
            self.evaluations["backward"] += mask.shape[0]
        if context.prefix_cache is None:
            embeds = torch.cat([context.prefix_embeds, response_embeds, context.suffix_embeds], dim=1)
            return self._embedding_forward(inputs_embeds=embeds, attention_mask=mask,
                                           position_ids=positions).logits[:, -1].float()
        from transformers import DynamicCache

        # a fresh cache object per call: its layers concatenate the new keys onto copies, so the
        # stored prefix states are never modified (and, computed without grad, take no gradient)
        cache = DynamicCache(context.prefix_cache)
        Pp = context.prefix_mask.shape[1]
        embeds = torch.cat([response_embeds, context.suffix_embeds], dim=1)
        return self._embedding_forward(inputs_embeds=embeds, attention_mask=mask, position_ids=positions[:, Pp:],
                                       past_key_values=cache, use_cache=True).logits[:, -1].float()

    @torch.no_grad()
    def score_texts(self, prompts: list[str], responses: list[str], batch_size: int = 16) -> list[float]:
        """Scores of (prompt, response) pairs through the reward tokenizer's chat template."""
        scores = []
        for start in range(0, len(prompts), batch_size):
            ids = [self.chat_ids(p, r) for p, r in zip(prompts[start:start + batch_size],
                                                       responses[start:start + batch_size])]
            input_ids, mask = self._left_pad(ids)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            # embeddings, not ids: the model then pools the last column, which left padding
            # keeps real, whatever the tokenizer's pad token is
            embeds = self.model.get_input_embeddings()(input_ids)
            logits = self.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits
            scores += logits[:, -1].float().tolist()
            self.evaluations["forward"] += len(ids)
        return scores

    def context_widths(self, prompts: list[str]) -> tuple[int, int]:
        """The widest chat prefix and suffix over ``prompts``."""
        parts = [self.prefix_suffix_ids(p) for p in prompts]
        return max(len(p) for p, _ in parts), max(len(s) for _, s in parts)

    def _left_pad(self, rows: list[list[int]], width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = left_pad(rows, pad, max(1, width))
        return ids.to(self.device), mask.to(self.device)
