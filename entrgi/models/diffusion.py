"""The diffusion LM wrapper the sampler talks to.

Diffusion LMs differ by data, not code: the mask token, whether logits are shifted (Dream
predicts position i from the output at i-1; LLaDA does not), the EOS tokens, the chat template
and the attention structure. ``DiffusionLM`` holds those and runs the network; the loaders
(``entrgi.models.loaders``, one record per checkpoint family) build it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from entrgi.errors import ConfigError
from entrgi.models.attention import AttentionStructure
from entrgi.models.batching import bidirectional_mask, left_pad, structured_mask


@dataclass
class DiffusionLM:
    """A masked diffusion LM: the network plus the data that says how to run it."""

    model: torch.nn.Module
    tokenizer: object
    mask_id: int
    eos_ids: list[int]
    shift_logits: bool  # Dream-style: logits at i come from the output at i - 1
    max_length: int
    attention: AttentionStructure = AttentionStructure()  # bidirectional, or block-causal with its block size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return self.model.config.get_text_config().vocab_size

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.eos_ids[0] if pad is None else pad

    def encode_prompts(self, prompts: list[str]) -> list[list[int]]:
        """Token ids of each prompt as a user turn, ready for the assistant's response."""
        return [
            list(self.tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                    tokenize=True, return_dict=False))
            for p in prompts
        ]

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Response text of each row: everything before the first EOS, special tokens dropped."""
        rows = []
        eos = set(self.eos_ids)
        for row in tokens.tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), len(row))
            rows.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        return rows

    def check_length(self, length: int) -> None:
        if length > self.max_length:
            raise ConfigError(
                f"prompt + response is {length} tokens but the model takes {self.max_length} (model.max_length); "
                f"lower sampler.gen_length or set benchmark.max_prompt_tokens"
            )

    def check_prompts(self, prompt_ids: list[list[int]], gen_length: int) -> None:
        """Refuse, before any sampling, prompts (as :meth:`encode_prompts` gives them) that leave no room
        for ``gen_length`` response tokens in the model's length."""
        too_long = [len(ids) for ids in prompt_ids if len(ids) + gen_length > self.max_length]
        if not too_long:
            return
        template = len(self.encode_prompts([""])[0])  # the chat template's own tokens
        room = self.max_length - gen_length - template
        if room > 0:
            fix = (f"set benchmark.max_prompt_tokens={room} (keeps each prompt's last {room} tokens) or lower "
                   f"sampler.gen_length")
        elif self.max_length > template:
            fix = f"lower sampler.gen_length below {self.max_length - template}"
        else:
            fix = f"the chat template alone takes {template} tokens: raise model.max_length"
        raise ConfigError(
            f"{len(too_long)} of {len(prompt_ids)} prompts leave no room for the response: the longest is "
            f"{max(too_long)} tokens with the chat template, + sampler.gen_length={gen_length} > {self.max_length} "
            f"(model.max_length); {fix}")

    def pad_prompts(self, prompt_ids: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-pad prompts to ``width`` (default: the longest); returns ids and the 0/1 attention mask."""
        ids, mask = left_pad(prompt_ids, self.pad_id, width or 0)
        return ids.to(self.device), mask.to(self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
                network: torch.nn.Module | None = None, columns: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[N, S - start, V]`` of positions ``start:``, attending as ``self.attention`` says over
        the non-padding tokens (block-causal: blocks counted from each row's first real token, the
        prompt included, as SDAR, TraDo and LLaDA2.x count them; ``start`` only picks the logits).

        With gradients (training); :meth:`logits` is the same without. With ``shift_logits`` (Dream)
        the logits at position i come from the output at i - 1. Only the positions asked for go
        through the output layer, which is most of a small model's cost: ``columns [N, n]`` (indices
        into ``start:``) narrows them to those columns of each row, giving ``[N, n, V]``.

        ``network``: this model as wrapped for training (PEFT, then DDP or FSDP), run through its own
        forward (a causal LM's, with ``logits_to_keep``): a wrapper synchronizes gradients only for
        calls that go through it.
        """
        if self.attention.is_block_causal:
            every = torch.arange(input_ids.shape[1], device=input_ids.device)
            additive = structured_mask(attention_mask, every, every, self.attention.block_size,
                                       next(self.model.parameters()).dtype)
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        else:
            additive, position_ids = bidirectional_mask(attention_mask, next(self.model.parameters()).dtype)
        if network is not None:
            first = max(start - 1, 0) if self.shift_logits else start  # the first output position needed
            logits = network(input_ids=input_ids, attention_mask=additive, position_ids=position_ids,
                             use_cache=False, logits_to_keep=input_ids.shape[1] - first).logits
            if self.shift_logits:
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1) if start == 0 else logits[:, :-1]
            return logits
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=additive, position_ids=position_ids,
                                       use_cache=False).last_hidden_state
        if self.shift_logits:
            hidden = torch.cat([hidden[:, :1], hidden[:, :-1]], dim=1)
        hidden = hidden[:, start:]
        if columns is not None:
            hidden = hidden.gather(1, columns.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return self.model.get_output_embeddings()(hidden)

    @torch.no_grad()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int = 0,
               columns: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` without gradients: what the sampler reads."""
        return self.forward(input_ids, attention_mask, start, columns=columns)

    @torch.no_grad()
    def cached_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int, query: slice,
                      cache: "KVCache | None" = None, columns: torch.Tensor | None = None,
                      keep: torch.Tensor | None = None,
                      hidden_at: int | None = None) -> tuple[torch.Tensor, "KVCache | None"]:
        """Logits of the canvas columns ``query`` (a slice of ``input_ids [N, S]``) computed with the
        other columns' keys and values read from ``cache`` instead of recomputed.

        ``start`` is the response's first column: the logits are those of ``query`` minus ``start``
        onward, narrowed to ``columns [N, n]`` (indices from ``query.start - start``) as in
        :meth:`forward`. Queries attend as ``self.attention`` says; for a block-causal model whose
        cache holds every earlier block (of each row's blocks, counted from its first real token) and
        whose ``query`` covers whole blocks this equals :meth:`forward` over the canvas (to rounding),
        for a bidirectional one it is the cache's approximation. ``keep [K + q]`` (bool over the
        cache's columns then ``query``'s): return a new cache of those columns' keys and values,
        and of the output at canvas column ``hidden_at`` (default: ``query``'s last), from which a
        shifted model's logits at the next column come.
        """
        from transformers import DynamicCache

        device = input_ids.device
        queries = torch.arange(query.start, query.stop, device=device)
        keys = queries if cache is None else torch.cat([cache.columns, queries])
        dtype = next(self.model.parameters()).dtype
        additive = structured_mask(attention_mask, keys, queries,
                                   self.attention.block_size if self.attention.is_block_causal else None, dtype)
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, query]
        past = DynamicCache(cache.layers if cache is not None else None, config=None if cache else self.model.config)
        hidden = self.model.base_model(input_ids=input_ids[:, query], attention_mask=additive,
                                       position_ids=position_ids, cache=past,
                                       use_cache=True).last_hidden_state
        new_cache = None
        if keep is not None:
            at = query.stop - 1 if hidden_at is None else hidden_at
            new_cache = KVCache(tuple((layer.keys[:, :, keep], layer.values[:, :, keep]) for layer in past.layers),
                                keys[keep], hidden[:, at - query.start])
        if self.shift_logits:  # logits at column c come from the output at c - 1
            before = hidden[:, :1] if cache is None or cache.last_hidden is None else cache.last_hidden[:, None]
            hidden = torch.cat([before, hidden[:, :-1]], dim=1)
        hidden = hidden[:, max(start - query.start, 0):]
        if columns is not None:
            hidden = hidden.gather(1, columns.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return self.model.get_output_embeddings()(hidden), new_cache


@dataclass
class KVCache:
    """The dLLM's keys and values at some canvas columns, per layer, for a batch of rows."""

    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per layer: keys, values [N, heads, K, head_dim]
    columns: torch.Tensor  # [K] the canvas column of each key
    # [N, H] the output at the column before the next query (a shifted model's logits there come
    # from it); None: the query's own first column stands in, as :meth:`DiffusionLM.forward` does
    last_hidden: torch.Tensor | None = None

    def rows(self, index: torch.Tensor) -> "KVCache":
        """The cache of the rows ``index`` (a subset or a reordering)."""
        return KVCache(tuple((k[index], v[index]) for k, v in self.layers), self.columns,
                       None if self.last_hidden is None else self.last_hidden[index])

    def put_rows(self, index: torch.Tensor, part: "KVCache") -> None:
        """Write ``part`` (the cache of rows ``index``, same columns) into these rows."""
        for (k, v), (pk, pv) in zip(self.layers, part.layers):
            k[index], v[index] = pk, pv
        if self.last_hidden is not None:
            self.last_hidden[index] = part.last_hidden
