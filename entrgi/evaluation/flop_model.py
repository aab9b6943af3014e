"""FLOPs of the passes a job counts, from the two models' shapes (the cost model of docs/cost-model.md).

Every method records, per prompt, the sequences it ran through the dLLM and through the reward
model forward and backward (``PromptResult.cost``). This module turns those counts into FLOPs,
2 per multiply-add, counting matrix products only (the linear layers, attention's QK^T and PV,
the dLLM's output layer and the relaxation's ``softmax(phi) @ E``). It reads transformers config
objects (``hidden_size``, ``intermediate_size``, ``num_hidden_layers``, heads, ``head_dim``, and a mixture
of experts' fields), so it works for any Qwen2/Qwen3/Llama-shaped pair and their MoE variants (counting
the experts a token runs), and ``scripts/bench.py`` uses the same functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace


def linear_macs_per_token(c) -> int:
    """Multiply-adds of one token through every layer's projections and MLP (see :func:`mlp_macs_per_token`)."""
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    return (c.hidden_size * (q + 2 * kv) + q * c.hidden_size) * c.num_hidden_layers + mlp_macs_per_token(c)


def mlp_macs_per_token(c) -> int:
    """Multiply-adds of one token through every layer's gated MLP (three matrices).

    A mixture-of-experts layer counts what one token runs (its active parameters): the router
    (hidden x experts), its ``num_experts_per_tok`` experts and the shared ones; dense layers among
    them (``mlp_only_layers``, ``first_k_dense_replace``, ``decoder_sparse_step``) count the dense MLP.
    Reads the fields of transformers' Qwen3-MoE, OLMoE and GLM-4-MoE configs and of BailingMoE-style ones
    (shared experts: ``num_shared_experts``, GLM-4-MoE's ``n_shared_experts``).
    """
    hidden, layers = c.hidden_size, c.num_hidden_layers
    dense = 3 * hidden * c.intermediate_size
    experts = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None)
    if not experts:
        return dense * layers
    width = getattr(c, "moe_intermediate_size", None) or c.intermediate_size  # one expert's
    shared = (getattr(c, "shared_expert_intermediate_size", None)
              or (getattr(c, "num_shared_experts", None) or getattr(c, "n_shared_experts", None) or 0) * width)
    routed = hidden * experts + 3 * hidden * (c.num_experts_per_tok * width + shared)
    step = getattr(c, "decoder_sparse_step", None) or 1
    sparse = [i for i in range(layers) if i not in (getattr(c, "mlp_only_layers", None) or [])
              and i >= (getattr(c, "first_k_dense_replace", None) or 0) and (i + 1) % step == 0]
    return routed * len(sparse) + dense * (layers - len(sparse))


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
    # the dLLM's work by what was computed (a job records its counts; cached columns are free):
    dllm_column: float = 0.0  # one column through every layer's projections and MLP
    dllm_head_column: float = 0.0  # one column through the output layer
    dllm_attention_key: float = 0.0  # one query attending to one key, in every layer
    # and the reward model's, for the guided scores' counted columns (``reward_guided_columns`` ...)
    reward_column: float = 0.0
    reward_attention_key: float = 0.0

    @classmethod
    def of(cls, dllm_config, reward_config, dllm_vocab: int, prompt_width: int, gen_length: int,
           reward_widths: tuple[int, int], masked: float) -> SequenceFlops:
        """``masked``: the mean number of masked positions at a guided step (see :func:`mean_masked`).
        ``reward_config`` None: the reward is a scorer (a rule, no network), whose passes cost no FLOPs
        here (its seconds are measured)."""
        dllm = {"dllm_forward": dllm_forward_flops(dllm_config, dllm_vocab, prompt_width + gen_length, masked),
                "dllm_column": 2 * linear_macs_per_token(dllm_config),
                "dllm_head_column": 2 * dllm_config.hidden_size * dllm_vocab,
                "dllm_attention_key": 2 * attention_macs(dllm_config, 1)}
        if reward_config is None:
            return cls(**dllm, reward_text_forward=0.0, reward_embedding_forward=0.0, reward_backward=0.0,
                       relaxation=0.0, reward_prefix=0.0)
        prefix, suffix = reward_widths
        queries = gen_length + suffix
        return cls(**dllm,
                   reward_text_forward=reward_forward_flops(reward_config, prefix + queries),
                   reward_embedding_forward=reward_forward_flops(reward_config, queries, prefix),
                   reward_backward=reward_backward_flops(reward_config, queries, prefix),
                   relaxation=relaxation_flops(masked, dllm_vocab, reward_config.hidden_size),
                   reward_prefix=reward_forward_flops(reward_config, prefix),
                   reward_column=2 * linear_macs_per_token(reward_config),
                   reward_attention_key=2 * attention_macs(reward_config, 1))

    def per_prompt(self, cost: dict, num_samples: int) -> dict:
        """FLOPs of one prompt from its counts ``cost`` (dllm_forwards, reward_forwards, reward_backwards).

        Every backward follows one embedding-scored forward (with its relaxation); the other forwards
        score text. With the dLLM's columns, output-layer columns and attention keys counted
        (``dllm_columns`` ..., what the sampler computed), the dLLM's FLOPs come from those.
        With the reward model's guided columns counted (``reward_guided_columns`` ..., what the
        guidance computed: the block modes score the current block only, after the committed ones),
        the guided scores' FLOPs come from those.
        """
        backward = cost["reward_backwards"]
        text = cost["reward_forwards"] - backward
        guided_forward, guided_backward = self.reward_embedding_forward * backward, self.reward_backward * backward
        if cost.get("reward_guided_columns") and self.reward_column:
            columns, keys = cost["reward_guided_columns"], cost["reward_guided_keys"]
            guided_forward = (self.reward_column * (columns + cost.get("reward_context_columns", 0))
                              + self.reward_attention_key * (keys + cost.get("reward_context_keys", 0)))
            guided_backward = self.reward_column * columns + 2 * self.reward_attention_key * keys
        dllm = self.dllm_forward * cost["dllm_forwards"]
        if cost.get("dllm_columns") and self.dllm_column:
            dllm = (self.dllm_column * cost["dllm_columns"] + self.dllm_head_column * cost["dllm_head_columns"]
                    + self.dllm_attention_key * cost["dllm_attention_keys"])
        flops = {"dllm": dllm,
                 "reward_forward": self.reward_text_forward * text + guided_forward + self.relaxation * backward
                 + (self.reward_prefix * num_samples if backward else 0),
                 "reward_backward": guided_backward + self.relaxation * backward}
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


def setup_flops(setup, masked: float | None = None) -> SequenceFlops:
    """The per-sequence FLOPs of a ``SamplingSetup``'s models, widths and sampler; ``masked``: the mean
    masked positions at a guided step as measured (default: the fixed plan's)."""
    s = setup.sampler
    if masked is None:
        masked = mean_masked(s.gen_length, s.steps, s.block_length, s.eps)
    network = getattr(setup.reward_model, "model", None)  # None: a scorer
    return SequenceFlops.of(setup.dllm.model.config.get_text_config(), network.config if network is not None else None,
                            setup.dllm.vocab_size, setup.prompt_width, s.gen_length, setup.reward_widths, masked)


# the dLLM work a hook does besides the sampler's steps (SVDD's look-ahead), counted like the sampler's
LOOKAHEAD = {"lookahead_columns": "dllm_columns", "lookahead_head_columns": "dllm_head_columns",
             "lookahead_attention_keys": "dllm_attention_keys"}
# the reward model's guided work (``RewardModel.evaluations``), as a prompt's cost records it
REWARD_WORK = ("guided_columns", "guided_keys", "context_columns", "context_keys")
COUNTS = ("dllm_forwards", "reward_forwards", "reward_backwards", "dllm_columns", "dllm_head_columns",
          "dllm_attention_keys", *(f"reward_{name}" for name in REWARD_WORK))


def summary_flops(summary: dict, setup) -> dict:
    """What a job's summary records about its FLOPs: per prompt (dLLM, reward forward, reward backward,
    total) and the per-sequence costs they came from (``python -m entrgi.costs`` reads both)."""
    per_prompt = summary["cost_per_prompt"]
    guided = per_prompt.get("guided_steps_per_sample", 0) * setup.num_samples
    sequence = setup_flops(setup, per_prompt["guided_positions"] / guided if guided else None)
    own = {name: per_prompt.get(name, 0) for name in COUNTS}
    cost = {**own, **{name: own[name] + per_prompt.get(extra, 0) for extra, name in LOOKAHEAD.items()}}
    # one unguided sample of this setup: the sampler's own dLLM work per sample (caches and finished rows
    # included; a hook's look-ahead left out) and the scoring of its text
    sampling = sequence.per_prompt({**own, "reward_forwards": 0, "reward_backwards": 0}, setup.num_samples)["dllm"]
    return {"per_prompt": sequence.per_prompt(cost, setup.num_samples), "per_sequence": asdict(sequence),
            "unguided_sample": sampling / setup.num_samples + sequence.reward_text_forward}


def parameters(c, vocab_size: int) -> int:
    """Parameters of a decoder: its layers' matrices (every expert), the embeddings and, untied, the output layer."""
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    attention = c.hidden_size * (q + 2 * kv) + q * c.hidden_size
    experts = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None)
    all_experts = SimpleNamespace(**{**vars(c), "num_experts_per_tok": experts}) if experts else c
    embeddings = vocab_size * c.hidden_size * (1 if getattr(c, "tie_word_embeddings", False) else 2)
    return attention * c.num_hidden_layers + mlp_macs_per_token(all_experts) + embeddings


def guidance_memory(dllm_config, dllm_vocab: int, reward_config, reward_vocab: int, rows: int, gen_length: int,
                    reward_width: int, weight_bytes: int = 2) -> dict[str, float]:
    """Bytes a guided run holds at its peak, estimated from the shapes: both models' weights and the
    working set of a guided step at its widest (every response position masked).

    The step holds the optimized logits ``phi`` in fp32 with Adam's two moments ``[rows, L, V]``, and the
    reward model's activations saved for the input gradient: per token and layer the inputs of its
    projections and MLP matrices, q/k/v and the attention output, and the gated MLP's two halves
    (``weight_bytes`` each). Not a measurement: allocator slack and transients come on top.
    """
    c = reward_config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    q, kv = c.num_attention_heads * head_dim, c.num_key_value_heads * head_dim
    saved_per_token = c.num_hidden_layers * (3 * c.hidden_size + 2 * q + 2 * kv + 3 * c.intermediate_size)
    memory = {"dllm_weights": parameters(dllm_config, dllm_vocab) * weight_bytes,
              "reward_weights": parameters(reward_config, reward_vocab) * weight_bytes,
              "logits_and_adam": 3 * rows * gen_length * dllm_vocab * 4,
              "reward_activations": rows * reward_width * saved_per_token * weight_bytes}
    return {**memory, "total": sum(memory.values())}
