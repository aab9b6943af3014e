"""FLOPs of the passes a job counts, from the two models' shapes (the cost model of docs/cost-model.md).

Every method records, per prompt, the sequences it ran through the dLLM and through the reward
model forward and backward (``PromptResult.cost``). This module turns those counts into FLOPs,
2 per multiply-add, counting matrix products only (the linear layers, attention's QK^T and PV,
the dLLM's output layer and the relaxation's ``softmax(phi) @ E``). It reads transformers config
objects (``hidden_size``, ``intermediate_size``, ``num_hidden_layers``, heads, ``head_dim``), so
it works for any Qwen2/Qwen3/Llama-shaped pair, and ``scripts/bench.py`` uses the same functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


def linear_macs_per_token(c) -> int:
    """Multiply-adds of one token through every layer's projections and MLP (gated: three matrices)."""
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    per_layer = c.hidden_size * (q + 2 * kv) + q * c.hidden_size + 3 * c.hidden_size * c.intermediate_size
    return per_layer * c.num_hidden_layers


def attention_macs(c, key_counts: int) -> int:
    """MACs of QK^T and PV for queries seeing ``key_counts`` keys in total (summed over queries)."""
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_attention_heads * head_dim * key_counts * c.num_hidden_layers


def dllm_forward_flops(c, vocab_size: int, columns: int, head_columns: float | None = None) -> float:
    """One sequence of ``columns`` tokens through the dLLM: bidirectional attention, and the output layer
    on ``head_columns`` of them (default: all; the sampler computes it at the masked columns only)."""
    head = columns if head_columns is None else head_columns
    linear, output_layer = columns * linear_macs_per_token(c), head * c.hidden_size * vocab_size
    return 2 * (linear + output_layer + attention_macs(c, columns ** 2))


def causal_keys(queries: int, past: int) -> int:
    """Keys seen in total by ``queries`` causal queries that follow ``past`` earlier tokens."""
    return queries * past + queries * (queries + 1) // 2


def reward_forward_flops(c, queries: int, past: int = 0) -> int:
    """``queries`` tokens through the (causal) reward model, after ``past`` tokens whose keys and
    values are cached."""
    return 2 * (queries * linear_macs_per_token(c) + attention_macs(c, causal_keys(queries, past)))


def reward_backward_flops(c, queries: int, past: int = 0) -> int:
    """The input gradient of :func:`reward_forward_flops` (no weight gradients): a linear layer's
    backward is one product, attention's two per forward product."""
    return 2 * (queries * linear_macs_per_token(c) + 2 * attention_macs(c, causal_keys(queries, past)))


def relaxation_flops(masked: float, vocab_size: int, hidden_size: int) -> float:
    """``softmax(phi) @ E`` at ``masked`` positions (its input gradient costs the same again)."""
    return 2 * masked * vocab_size * hidden_size


@dataclass
class SequenceFlops:
    """FLOPs of one sequence through each kind of pass a job counts."""

    dllm_forward: float  # prompt_width + L columns, the output layer at the masked ones
    reward_text_forward: float  # a decoded (prompt, response) pair, scored as text: prefix + L + suffix
    reward_embedding_forward: float  # a guided score: L + suffix after the cached prefix
    reward_backward: float  # its input gradient
    relaxation: float  # softmax(phi) @ E of a guided score (its gradient to phi costs the same again)
    reward_prefix: float  # the chat prefix, computed once per guided row and generate call

    @classmethod
    def of(cls, dllm_config, reward_config, dllm_vocab: int, prompt_width: int, gen_length: int,
           reward_widths: tuple[int, int], masked: float) -> SequenceFlops:
        """``masked``: the mean number of masked positions at a guided step (see :func:`mean_masked`).
        ``reward_config`` None: the reward is a scorer (a rule, no network), whose passes cost no FLOPs
        here (its seconds are measured)."""
        dllm = dllm_forward_flops(dllm_config, dllm_vocab, prompt_width + gen_length, masked)
        if reward_config is None:
            return cls(dllm_forward=dllm, reward_text_forward=0.0, reward_embedding_forward=0.0,
                       reward_backward=0.0, relaxation=0.0, reward_prefix=0.0)
        prefix, suffix = reward_widths
        queries = gen_length + suffix
        return cls(dllm_forward=dllm,
                   reward_text_forward=reward_forward_flops(reward_config, prefix + queries),
                   reward_embedding_forward=reward_forward_flops(reward_config, queries, prefix),
                   reward_backward=reward_backward_flops(reward_config, queries, prefix),
                   relaxation=relaxation_flops(masked, dllm_vocab, reward_config.hidden_size),
                   reward_prefix=reward_forward_flops(reward_config, prefix))

    def per_prompt(self, cost: dict, num_samples: int) -> dict:
        """FLOPs of one prompt from its counts ``cost`` (dllm_forwards, reward_forwards, reward_backwards).

        Every backward follows one embedding-scored forward (with its relaxation); the other forwards
        score text.
        """
        backward = cost["reward_backwards"]
        text = cost["reward_forwards"] - backward
        guided = (self.reward_embedding_forward + self.relaxation) * backward
        flops = {"dllm": self.dllm_forward * cost["dllm_forwards"],
                 "reward_forward": self.reward_text_forward * text + guided
                 + (self.reward_prefix * num_samples if backward else 0),
                 "reward_backward": (self.reward_backward + self.relaxation) * backward}
        return {**flops, "total": sum(flops.values())}

    def unguided_sample(self, dllm_forwards_per_sample: float) -> float:
        """FLOPs of one unguided sample: its dLLM forwards and the scoring of its text."""
        return self.dllm_forward * dllm_forwards_per_sample + self.reward_text_forward


def mean_masked(gen_length: int, steps: int, block_length: int | None = None, eps: float = 1e-3) -> float:
    """The mean number of masked positions over the committing steps of the plan (every guided step
    of a method that guides them all)."""
    from entrgi.sampling.sampler import commit_plan

    plan = [s.num_masked for s in commit_plan(gen_length, steps, block_length, eps) if s.count > 0]
    return sum(plan) / len(plan)


def setup_flops(setup) -> SequenceFlops:
    """The per-sequence FLOPs of a ``SamplingSetup``'s models, widths and sampler."""
    s = setup.sampler
    network = getattr(setup.reward_model, "model", None)  # None: a scorer
    return SequenceFlops.of(setup.dllm.model.config.get_text_config(), network.config if network is not None else None,
                            setup.dllm.vocab_size, setup.prompt_width, s.gen_length, setup.reward_widths,
                            mean_masked(s.gen_length, s.steps, s.block_length, s.eps))


def summary_flops(summary: dict, setup) -> dict:
    """What a job's summary records about its FLOPs: per prompt (dLLM, reward forward, reward backward,
    total) and the per-sequence costs they came from (``python -m entrgi.costs`` reads both)."""
    from entrgi.sampling.sampler import commit_plan

    sequence = setup_flops(setup)
    cost = {name: summary["cost_per_prompt"].get(name, 0)
            for name in ("dllm_forwards", "reward_forwards", "reward_backwards")}
    s = setup.sampler
    # one unguided sample's forwards come from the plan: a method may run more (SVDD's look-ahead)
    steps = sum(step.count > 0 for step in commit_plan(s.gen_length, s.steps, s.block_length, s.eps))
    return {"per_prompt": sequence.per_prompt(cost, setup.num_samples), "per_sequence": asdict(sequence),
            "unguided_sample": sequence.unguided_sample(steps)}
