"""The masked-diffusion sampler: commit schedule, token sampling, remasking, and the guided step.

All rows (prompts x samples) move through each denoising step as one batch. The number of
positions committed at a step is the same for every row, so it is planned on the host before
sampling starts and no step needs a host-device synchronization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from entrgi.bookkeeping.timing import section
from entrgi.errors import ConfigError
from entrgi.sampling.rng import RowRandom

REMASKING = ("origin", "maskgit_plus", "topk_margin", "entropy")


@dataclass
class SamplerConfig:
    gen_length: int = 128  # L: response positions, all masked at the start
    steps: int = 128  # T: denoising steps (over all blocks)
    temperature: float = 0.7  # tau
    top_p: float = 0.95
    top_k: int | None = None
    alg: str = "entropy"  # remasking strategy, one of REMASKING
    alg_temp: float | None = None  # None: deterministic top-k by confidence; else Gumbel-top-k
    eos_last: bool = True  # a sampled EOS is committed only after every other position
    block_length: int | None = None  # semi-autoregressive blocks (LLaDA); None: one block
    eps: float = 1e-3  # the time grid runs from 1 to eps

    def __post_init__(self):
        number, optional = (int, float), (int, float, type(None))
        kinds = {"gen_length": int, "steps": int, "temperature": number, "top_p": number, "eps": number,
                 "top_k": (int, type(None)), "block_length": (int, type(None)), "alg_temp": optional}
        for name, kind in kinds.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind):
                what = "an integer" if kind in (int, (int, type(None))) else "a number"
                raise ConfigError(f"sampler.{name}={value!r} must be {what}")
        if self.alg not in REMASKING:
            raise ConfigError(f"unknown remasking alg {self.alg!r}; set sampler.alg to one of {list(REMASKING)}")
        if self.gen_length < 1 or self.steps < 1:
            raise ConfigError("sampler.gen_length and sampler.steps must be >= 1")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampler.top_p={self.top_p} must be in (0, 1]")
        if not self.temperature > 0:  # `not >` also refuses NaN
            raise ConfigError(f"sampler.temperature={self.temperature} must be > 0 (use a small value for near-greedy)")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"sampler.top_k={self.top_k} must be >= 1, or null for no top-k cut")
        if self.block_length is not None and self.block_length < 1:
            raise ConfigError(f"sampler.block_length={self.block_length} must be >= 1, or null for one block")
        if self.alg_temp is not None and not self.alg_temp >= 0:
            raise ConfigError(f"sampler.alg_temp={self.alg_temp} must be >= 0, or null for deterministic remasking")
        if not 0 < self.eps < 1:
            raise ConfigError(f"sampler.eps={self.eps} must be in (0, 1): the time grid runs from 1 down to it")


@dataclass
class CommitStep:
    """One denoising step of the plan: commit ``count`` positions of ``[block_start, block_end)``."""

    index: int
    block_start: int
    block_end: int
    count: int
    num_masked: int  # masked positions in the whole response before this step
    t: float = 1.0  # the diffusion time at the start of the step: 1 (all masked) -> eps, per block


def commit_plan(gen_length: int, steps: int, block_length: int | None = None, eps: float = 1e-3) -> list[CommitStep]:
    """How many positions each step commits, on the time grid t = 1 -> eps of each block.

    A step from t to s commits ``floor(n_masked * (1 - s / t))`` of the block's masked positions,
    and the block's last step commits all that remain.
    """
    block_length = block_length or gen_length
    if gen_length % block_length:
        raise ConfigError(f"sampler.gen_length={gen_length} is not a multiple of sampler.block_length={block_length}")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ConfigError(f"sampler.steps={steps} must be a multiple of the number of blocks ({num_blocks})")
    steps_per_block = steps // num_blocks
    plan, total_masked = [], gen_length
    for block in range(num_blocks):
        grid = torch.linspace(1.0, eps, steps_per_block + 1, dtype=torch.float64).tolist()
        masked = block_length
        for i in range(steps_per_block):
            t, s = grid[i], grid[i + 1]
            count = masked if i == steps_per_block - 1 else math.floor(masked * (1 - s / t))
            plan.append(CommitStep(len(plan), block * block_length, (block + 1) * block_length, count, total_masked, t))
            masked -= count
            total_masked -= count
    return plan


def top_p_top_k_filter(logits: torch.Tensor, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """Set logits outside the top-k and outside the nucleus (smallest set with mass >= top_p) to -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        sorted_probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already exceeds top_p (the top token always stays)
        drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) > top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_from_probs(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: one token per row of ``probs [..., V]`` from ``uniforms [...]``."""
    cdf = probs.cumsum(-1)
    target = (uniforms * cdf[..., -1]).unsqueeze(-1)
    return torch.searchsorted(cdf.contiguous(), target.contiguous()).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def sampling_probs(logits: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The distribution tokens are drawn from: temperature, then top-k and top-p, in fp32."""
    return torch.softmax(top_p_top_k_filter(logits.float() / cfg.temperature, cfg.top_p, cfg.top_k), dim=-1)


def sample_nucleus(logits: torch.Tensor, cfg: SamplerConfig, uniform, rounds: int = 2) -> torch.Tensor:
    """Draw from ``sampling_probs(logits, cfg)`` exactly, without sorting the vocabulary.

    Rejection sampling: draw from the tempered (top-k) distribution and accept a token when the
    mass of the tokens more probable than it is at most ``top_p`` (it is then in the nucleus).
    Each round rejects at most ``1 - top_p`` of the rows; the few rows left after ``rounds`` are
    drawn through the sorted nucleus. ``uniform(round)`` gives one draw per row, ``[...]``.
    """
    probs = torch.softmax(top_p_top_k_filter(logits.float() / cfg.temperature, 1.0, cfg.top_k), dim=-1)
    if cfg.top_p >= 1.0:
        return sample_from_probs(probs, uniform(0))
    tokens = torch.zeros(probs.shape[:-1], dtype=torch.long, device=probs.device)
    accepted = torch.zeros(probs.shape[:-1], dtype=torch.bool, device=probs.device)
    for r in range(rounds):
        candidate = sample_from_probs(probs, uniform(r))
        p_candidate = probs.gather(-1, candidate.unsqueeze(-1))
        mass_above = torch.where(probs > p_candidate, probs, 0.0).sum(-1)
        take = (mass_above <= cfg.top_p) & ~accepted
        tokens = torch.where(take, candidate, tokens)
        accepted |= take
    rejected = ~accepted
    if rejected.any():  # rare: one host sync, and a sort of the few rejected rows only
        nucleus = torch.softmax(top_p_top_k_filter(logits[rejected].float() / cfg.temperature, cfg.top_p,
                                                   cfg.top_k), dim=-1)
        tokens[rejected] = sample_from_probs(nucleus, uniform(rounds)[rejected])
    return tokens


def confidence(alg: str, probs: torch.Tensor, tokens: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """How sure the model is at each position; the most confident are committed first."""
    if alg == "origin":
        return uniforms
    if alg == "maskgit_plus":
        return probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    if alg == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    return torch.special.xlogy(probs, probs).sum(-1)  # entropy: negative entropy


@dataclass
class StepState:
    """What a step hook sees: the rows' state before the step's tokens are drawn."""

    step: CommitStep  # index, time t, block, how many positions it commits
    tokens: torch.Tensor  # [N, L] response tokens, ``mask_id`` where still masked
    positions: torch.Tensor  # [N, n] the masked columns, in column order
    logits: torch.Tensor  # [N, n, V] the dLLM's logits at those columns (mask token at -inf)
    rng: RowRandom  # each row's random streams


@dataclass
class StepUpdate:
    """What a step hook may change. Rows are reordered first; ``logits`` and ``stats`` are in the new order."""

    logits: torch.Tensor | None = None  # [N, n, V] draw this step's tokens from these (e.g. guided) logits
    order: torch.Tensor | None = None  # [N] new row i continues old row order[i] (resampling particles)
    row_keys: torch.Tensor | None = None  # [N] random keys of the reordered rows; default: keys move with rows
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # [N] per-row statistics for the trace


class StepHook(Protocol):
    """Called at every denoising step that commits tokens (see ``entrgi.sampling.guidance.RewardGuidance``)."""

    def __call__(self, state: StepState) -> StepUpdate | None: ...


@dataclass
class GenerationOutput:
    tokens: torch.Tensor  # [N, L] the response tokens
    trace: list[dict] = field(default_factory=list)  # per executed step: step, committed, per-row stats
    dllm_forwards: int = 0  # sequences through the dLLM
    ancestors: torch.Tensor | None = None  # [N] the input row each final row descends from (None: itself)


def reorder_trace(trace: list[dict], order: torch.Tensor) -> None:
    """Re-index the per-row statistics of earlier steps, so every row's trace follows its lineage."""
    for entry in trace:
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                entry[name] = value[order]


def generate(
    dllm,
    prompt_ids: list[list[int]],
    row_keys: list[int],
    cfg: SamplerConfig,
    hook: StepHook | None = None,
    prompt_width: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> GenerationOutput:
    """Sample one response per row. ``row_keys`` seeds each row (see ``entrgi.sampling.rng.row_key``).

    ``dllm`` is an ``entrgi.models.diffusion.DiffusionLM``. A ``hook`` sees every step's state and
    may replace the logits tokens are drawn from (reward guidance) and reorder the rows (particle
    resampling). Prompts are left-padded to ``prompt_width``: a width fixed for a whole run keeps
    each row's numbers bit-identical whatever batch it is in. ``on_step(done, total)`` follows each
    step that commits tokens (progress display).
    """
    device = dllm.device
    L = cfg.gen_length
    prompt, prompt_mask = dllm.pad_prompts(prompt_ids, prompt_width)
    P = prompt.shape[1]
    dllm.check_length(P + L)
    x = torch.cat([prompt, torch.full((len(prompt_ids), L), dllm.mask_id, device=device)], dim=1)
    attention = torch.cat([prompt_mask, torch.ones(len(prompt_ids), L, dtype=prompt_mask.dtype, device=device)], 1)
    rng = RowRandom(row_keys, device=device)
    eos = torch.tensor(dllm.eos_ids, device=device)
    out = GenerationOutput(tokens=x[:, P:])
    column = torch.arange(L, device=device)
    ancestors = torch.arange(x.shape[0], device=device)

    plan = [step for step in commit_plan(L, cfg.steps, cfg.block_length, cfg.eps)
            if step.count > 0]  # nothing is committed and guidance starts afresh each step: skipping is exact
    for done, step in enumerate(plan, 1):
        response = x[:, P:]
        n = step.num_masked
        # the n masked columns of each row, in column order (every row has exactly n)
        positions = torch.sort(torch.where(response == dllm.mask_id, column, column + L), dim=-1).values[:, :n]
        with section("dllm_forward"):
            logits = dllm.logits(x, attention)[:, P:].gather(1, positions[..., None].expand(-1, -1, dllm.vocab_size))
            logits[..., dllm.mask_id] = float("-inf")  # never sample the mask token itself
        out.dllm_forwards += x.shape[0]

        update = hook(StepState(step, response, positions, logits, rng)) if hook is not None else None
        update = update or StepUpdate()
        if update.order is not None:  # whole particles move: tokens, logits and random streams
            order = update.order
            x, attention, positions, logits = x[order], attention[order], positions[order], logits[order]
            response = x[:, P:]
            rng = RowRandom(rng.keys[order] if update.row_keys is None else update.row_keys, device=device)
            ancestors = ancestors[order]
            reorder_trace(out.trace, order)
        with section("pre_guidance_filter"):
            probs = sampling_probs(logits, cfg)  # pre-guidance: ranks the positions to commit

        with section("sampling_remasking"):
            if update.logits is not None:
                tokens = sample_nucleus(update.logits, cfg, lambda r: rng.uniform((n,), step.index, RowRandom.TOKENS, r))
            else:
                tokens = sample_from_probs(probs, rng.uniform((n,), step.index, RowRandom.TOKENS, 0))
            # which positions to commit: ranked on the pre-guidance distribution
            noise = rng.uniform((n,), step.index, RowRandom.COMMIT)
            key = confidence(cfg.alg, probs, tokens, noise)
            if cfg.alg_temp:
                key = key / cfg.alg_temp - torch.log(-torch.log(noise))  # Gumbel-top-k = sampling w/o replacement
            if cfg.eos_last:
                key = torch.where(torch.isin(tokens, eos), key - 1e6, key)
            in_block = (positions >= step.block_start) & (positions < step.block_end)
            key = key.masked_fill(~in_block, float("-inf"))
            chosen = key.topk(step.count, dim=-1).indices
            x[:, P:] = response.scatter(1, positions.gather(1, chosen), tokens.gather(1, chosen))

        out.trace.append({"step": step.index, "committed": step.count, **update.stats})
        if on_step is not None:
            on_step(done, len(plan))

    out.tokens = x[:, P:]
    if not torch.equal(ancestors, torch.arange(x.shape[0], device=device)):
        out.ancestors = ancestors
    return out
