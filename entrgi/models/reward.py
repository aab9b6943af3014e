"""The reward model: scoring text, scoring relaxed embeddings, and the bridge between vocabularies.

Any one-label decoder sequence classifier with a ``score`` head works (transformers'
``Qwen3ForSequenceClassification``, ``LlamaForSequenceClassification``, ...). The guidance feeds it
``inputs_embeds = [chat prefix of the prompt | response | chat suffix]`` so gradients reach the
dLLM's logits; final scores are computed on decoded text through the reward tokenizer's own
chat template, as the reward model was trained.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.models.batching import left_pad
from entrgi.models.loading import checkpoint_config, from_pretrained, resolve_device, resolve_dtype

_SENTINEL = "\u2063ENTRGI_RESPONSE\u2063"
UNMATCHED = ("unk", "zero", "retokenize")


@functools.cache
def cache_keyword(forward) -> str:
    """The keyword a model's ``forward`` takes its key/value cache by: ``cache`` from transformers 5.24
    (``past_key_values`` is deprecated there, and removed in 5.40), ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def pooled_scores(model: torch.nn.Module, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                  input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                  cache=None) -> torch.Tensor:
    """Scores ``[N]`` of a one-label sequence classifier on left-padded rows (or ids / embeddings of
    them that follow a ``cache`` of earlier columns).

    The base model runs, and the score of the last column is taken (the score head, ``model.score``):
    with left padding the last column is always a real token. That is the classifier's own pooling,
    done explicitly, because the classifier's forward cannot find the last real token of
    ``inputs_embeds`` (it warns and takes the last column, which is this one).
    """
    base = model.base_model
    kwargs = {"use_cache": False} if cache is None else {cache_keyword(type(base).forward): cache, "use_cache": True}
    hidden = base(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                  position_ids=position_ids, **kwargs).last_hidden_state
    return model.score(hidden)[:, -1, 0].float()  # the head on every column, as the classifier runs it (bit-equal)


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

    def rows(self, index: torch.Tensor) -> "RewardContext":
        """The context of the rows ``index`` (the rows that take part in a step)."""
        cache = None if self.prefix_cache is None else tuple((k[index], v[index]) for k, v in self.prefix_cache)
        return RewardContext(self.prefix_embeds[index], self.prefix_mask[index], self.suffix_embeds[index],
                             self.suffix_mask[index], cache)


class RewardModel:
    def __init__(self, model: torch.nn.Module, tokenizer, chat_template: str | None = None):
        self.model = model.eval().requires_grad_(False)  # only inputs get gradients
        self.tokenizer = tokenizer
        if chat_template:
            tokenizer.chat_template = chat_template
        if getattr(model.config, "num_labels", 1) != 1:
            raise ConfigError(f"reward model has {model.config.num_labels} labels; a reward model must have exactly 1")
        if not isinstance(getattr(model, "score", None), torch.nn.Linear):
            raise ConfigError(f"reward model {type(model).__name__} has no `score` head; use a decoder sequence "
                              f"classifier (e.g. Qwen3ForSequenceClassification, LlamaForSequenceClassification)")
        # for cost accounting: sequences forward and backward; the columns (queries) and the keys they
        # attended to of the guided scores (whose backward mirrors them) and of the committed response
        # columns added to a step's context (forward only, see ``extend_context``)
        self.evaluations = {"forward": 0, "backward": 0, "guided_columns": 0, "guided_keys": 0,
                            "context_columns": 0, "context_keys": 0}
        self._embedding_scores = functools.partial(pooled_scores, self.model)  # what score_embeddings runs (see compile)

    @classmethod
    def load(cls, path: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             chat_template: str | None = None) -> "RewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        raw = checkpoint_config(path, "reward")
        # transformers writes the labels only when they are not its default of 2
        labels = len(raw["id2label"]) if raw.get("id2label") else raw.get("num_labels", 2)
        if labels != 1:  # loading it as one label would fail on the head's shape, or silently re-initialize it
            raise ConfigError(f"reward model {path!r} has {labels} labels; set reward.path to a one-label sequence "
                              f"classifier (a reward model)")
        device_ = resolve_device(device)
        tokenizer = from_pretrained(AutoTokenizer, path, "reward", trust_remote_code=trust_remote_code)
        model = from_pretrained(AutoModelForSequenceClassification, path, "reward", weights=True,
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
        self._embedding_scores = torch.compile(functools.partial(pooled_scores, self.model), dynamic=False)

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
        base = self.model.base_model
        base(inputs_embeds=context.prefix_embeds, attention_mask=context.prefix_mask, position_ids=positions,
             use_cache=True, **{cache_keyword(type(base).forward): cache})
        return tuple((layer.keys, layer.values) for layer in cache.layers)

    @torch.no_grad()
    def extend_context(self, context: RewardContext, response_embeds: torch.Tensor,
                       response_keep: torch.Tensor) -> RewardContext:
        """``context`` with the response's first columns ``response_embeds [N, c, H]`` (committed tokens,
        the same at every score of a step) moved into its prefix, their keys and values computed once.

        The reward model is causal: a score of the rest of the response after this context equals
        the score of the whole response after ``context`` (to rounding), at the cost of the rest only.
        """
        mask = torch.cat([context.prefix_mask, response_keep.long()], dim=1)
        embeds = torch.cat([context.prefix_embeds, response_embeds.to(context.prefix_embeds.dtype)], dim=1)
        extended = RewardContext(embeds, mask, context.suffix_embeds, context.suffix_mask)
        if context.prefix_cache is not None:
            from transformers import DynamicCache

            Pp, N, c = context.prefix_mask.shape[1], *response_keep.shape
            cache = DynamicCache(context.prefix_cache)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, Pp:]
            base = self.model.base_model
            base(inputs_embeds=embeds[:, Pp:], attention_mask=mask, position_ids=positions, use_cache=True,
                 **{cache_keyword(type(base).forward): cache})
            extended.prefix_cache = tuple((layer.keys, layer.values) for layer in cache.layers)
            self.evaluations["context_columns"] += N * c
            self.evaluations["context_keys"] += N * (c * Pp + c * (c + 1) // 2)
        return extended

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
            # the columns run (after the cached prefix, or all) and the keys they see, causally
            past = context.prefix_mask.shape[1] if context.prefix_cache is not None else 0
            queries = mask.shape[1] - past
            self.evaluations["guided_columns"] += mask.shape[0] * queries
            self.evaluations["guided_keys"] += mask.shape[0] * (queries * past + queries * (queries + 1) // 2)
        if context.prefix_cache is None:
            embeds = torch.cat([context.prefix_embeds, response_embeds, context.suffix_embeds], dim=1)
            return self._embedding_scores(mask, positions, inputs_embeds=embeds)
        from transformers import DynamicCache

        # a fresh cache object per call: its layers concatenate the new keys onto copies, so the
        # stored prefix states are never modified (and, computed without grad, take no gradient)
        cache = DynamicCache(context.prefix_cache)
        Pp = context.prefix_mask.shape[1]
        embeds = torch.cat([response_embeds, context.suffix_embeds], dim=1)
        return self._embedding_scores(mask, positions[:, Pp:], inputs_embeds=embeds, cache=cache)

    @torch.no_grad()
    def score_texts(self, prompts: list[str], responses: list[str], batch_size: int = 16,
                    width: int = 0) -> list[float]:
        """Scores of (prompt, response) pairs through the reward tokenizer's chat template.

        Rows are left-padded to ``width`` tokens, or to the longest row of their batch when that is
        longer. Padding is masked, but another width changes the order of the sums (by ~1e-6): a
        width fixed for a run (:meth:`text_width`) keeps a row's score the same whatever batch it
        is in.
        """
        scores = []
        for start in range(0, len(prompts), batch_size):
            ids = [self.chat_ids(p, r) for p, r in zip(prompts[start:start + batch_size],
                                                       responses[start:start + batch_size])]
            input_ids, mask = self._left_pad(ids, width)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            scores += pooled_scores(self.model, mask, positions, input_ids=input_ids).tolist()
            self.evaluations["forward"] += len(ids)
        return scores

    def text_width(self, prompts: list[str], gen_length: int) -> int:
        """A run's width for :meth:`score_texts`: the widest chat prefix and suffix over ``prompts`` and
        ``gen_length`` response tokens (a response that takes more reward tokens widens its batch)."""
        return sum(self.context_widths(prompts)) + gen_length

    def context_widths(self, prompts: list[str]) -> tuple[int, int]:
        """The widest chat prefix and suffix over ``prompts``."""
        parts = [self.prefix_suffix_ids(p) for p in prompts]
        return max(len(p) for p, _ in parts), max(len(s) for _, s in parts)

    def _left_pad(self, rows: list[list[int]], width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask = left_pad(rows, pad, max(1, width))
        return ids.to(self.device), mask.to(self.device)
