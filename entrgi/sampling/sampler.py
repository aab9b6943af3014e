"""The masked-diffusion sampler: commit schedule, token sampling, remasking, and the guided step.

All rows (prompts x samples) move through each denoising step as one batch. The number of
positions committed at a step is the same for every row, so it is planned on the host before
sampling starts and no step needs a host-device synchronization.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from entrgi.bookkeeping.timing import section
from entrgi.errors import ConfigError
from entrgi.models.attention import AttentionStructure
from entrgi.sampling import fastpaths
from entrgi.sampling.fastpaths import compilable
from entrgi.sampling.rng import RowRandom

REMASKING = ("origin", "maskgit_plus", "topk_margin", "entropy")
CACHES = ("none", "prefix", "dual")  # the dLLM cache of a bidirectional model (block-causal ones: always exact)


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
    # Fast-dLLM's approximate caches of a bidirectional model, refreshed at each block's first step:
    # none | prefix (the columns before the block) | dual (before and after it); need block_length
    cache: str = "none"
    # parallel decoding: commit every masked position of the block whose drawn token has probability
    # above it (at least the most confident one); None: the fixed plan. ``steps`` stays the cap
    threshold: float | None = None

    def __post_init__(self):
        number, optional = (int, float), (int, float, type(None))
        kinds = {"gen_length": int, "steps": int, "temperature": number, "top_p": number, "eps": number,
                 "top_k": (int, type(None)), "block_length": (int, type(None)), "alg_temp": optional,
                 "threshold": optional}
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
        if self.cache not in CACHES:
            raise ConfigError(f"unknown sampler.cache={self.cache!r}; set it to one of {list(CACHES)}")
        if self.cache != "none" and self.block_length is None:
            raise ConfigError(f"sampler.cache={self.cache} is refreshed at each block boundary: set "
                              f"sampler.block_length (e.g. 32), or sampler.cache=none")
        if self.threshold is not None and not 0 < self.threshold <= 1:
            raise ConfigError(f"sampler.threshold={self.threshold} must be in (0, 1], or null for the fixed plan")


def check_structure(cfg: SamplerConfig, attention: AttentionStructure) -> None:
    """Refuse sampler settings the model's attention structure forbids (before any model loads)."""
    if not attention.is_block_causal:
        return
    if cfg.cache != "none":
        raise ConfigError(f"sampler.cache={cfg.cache} approximates a bidirectional model; this model is "
                          f"block-causal and caches exactly: set sampler.cache=none")
    if cfg.block_length not in (None, attention.block_size):
        raise ConfigError(f"sampler.block_length={cfg.block_length} but the model attends in blocks of "
                          f"{attention.block_size}: set sampler.block_length={attention.block_size} or null")
    if cfg.gen_length % attention.block_size:
        raise ConfigError(f"sampler.gen_length={cfg.gen_length} is not a multiple of the model's block size "
                          f"{attention.block_size}: set sampler.gen_length to a multiple of it")


def block_length(cfg: SamplerConfig, attention: AttentionStructure) -> int | None:
    """The sampler's blocks: the model's own for a block-causal model, else ``cfg.block_length``."""
    return attention.block_size if attention.is_block_causal else cfg.block_length


@dataclass
class CommitStep:
    """One denoising step of the plan: commit ``count`` positions of ``[block_start, block_end)``."""

    index: int
    block_start: int
    block_end: int
    count: int
    num_masked: int  # masked positions in the whole response before this step
    t: float = 1.0  # the diffusion time at the start of the step: 1 (all masked) -> eps, per block
    last: bool = False  # the block's last step: it commits all that remain


def first_block(prompt_length: int, attention: AttentionStructure) -> int:
    """The length of a row's first response block: a block-causal model counts its blocks from the
    prompt's first token, so the response starts with the columns that complete the prompt's last
    block (0: the prompt fills whole blocks; always 0 for a bidirectional model)."""
    return -prompt_length % attention.block_size if attention.is_block_causal else 0


def commit_plan(gen_length: int, steps: int, block_length: int | None = None, eps: float = 1e-3,
                first_block: int = 0) -> list[CommitStep]:
    """How many positions each step commits, on the time grid t = 1 -> eps of each block.

    A step from t to s commits ``floor(n_masked * (1 - s / t))`` of the block's masked positions,
    and the block's last step commits all that remain. ``steps`` are spread evenly over the
    ``gen_length / block_length`` blocks. ``first_block`` (a block-causal model's prompt ending
    inside a block, see :func:`first_block`): the blocks start at that column, so the response
    opens with a short block of ``first_block`` columns and closes with one of ``block_length -
    first_block``; a short block takes a full block's steps, each committing what it would in a
    full block, until its columns are committed (as SDAR's ``block_diffusion_generate`` steps the
    block that completes the prompt), so it takes fewer steps.
    """
    block_length = block_length or gen_length
    if gen_length % block_length:
        raise ConfigError(f"sampler.gen_length={gen_length} is not a multiple of sampler.block_length={block_length}")
    num_blocks = gen_length // block_length
    if steps % num_blocks:
        raise ConfigError(f"sampler.steps={steps} must be a multiple of the number of blocks ({num_blocks})")
    if not 0 <= first_block < block_length:
        raise ValueError(f"first_block={first_block} must be in [0, {block_length})")
    steps_per_block = steps // num_blocks
    grid = torch.linspace(1.0, eps, steps_per_block + 1, dtype=torch.float64).tolist()
    full_counts, masked = [], block_length  # what each step of a full block commits
    for i in range(steps_per_block):
        count = masked if i == steps_per_block - 1 else math.floor(masked * (1 - grid[i + 1] / grid[i]))
        full_counts.append(count)
        masked -= count
    edges = sorted({0, gen_length, *range(first_block, gen_length, block_length)})
    plan, total_masked = [], gen_length
    for block_start, block_end in itertools.pairwise(edges):
        masked = block_end - block_start
        for i, full_count in enumerate(full_counts):
            count = min(full_count, masked)
            plan.append(CommitStep(len(plan), block_start, block_end, count, total_masked, grid[i],
                                   last=count == masked))
            masked -= count
            total_masked -= count
            if not masked:
                break
    return plan


def top_p_top_k_filter(logits: torch.Tensor, top_p: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """Set logits outside the top-k and outside the nucleus (smallest set with mass >= top_p) to -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        logits = nucleus_filter(logits, top_p)
    return logits


def sorted_nucleus_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The nucleus by a full sort: a token is dropped when the mass before it exceeds ``top_p``.

    The probabilities are the softmax of the unsorted row and their cumulative mass is summed in
    fp64, so the decision does not depend on the order a sorted row would be summed in; the top
    token always stays. Equal logits are ordered by token index (a stable sort), the one tie order
    :func:`nucleus_filter` keeps too.
    """
    order = torch.sort(logits, dim=-1, descending=True, stable=True).indices
    sorted_probs = torch.softmax(logits, dim=-1).gather(-1, order).double()
    drop_sorted = (sorted_probs.cumsum(-1) - sorted_probs) > top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def nucleus_filter(logits: torch.Tensor, top_p: float, buckets: int | None = None,
                   max_candidates: int = 256) -> torch.Tensor:
    """:func:`sorted_nucleus_filter` without sorting the vocabulary; the same tokens are kept.

    The tokens are bucketed by their distance to the row's maximum logit (a monotone map, so the
    buckets are ordered as a sort would order the tokens) and a histogram of their mass finds the
    bucket where the cumulative mass crosses ``top_p``; only that bucket's tokens are sorted.
    The last kept token has probability at least ``(1 - top_p) / V``, which bounds how far below
    the maximum the buckets must reach. Equal logits are ordered by token index, as in the sort, so
    a boundary between equal logits (frequent in bf16) is decided here too. A row goes through the
    full sort instead when its boundary is within fp64 rounding of ``top_p``, or when the crossing
    bucket holds more than ``max_candidates`` tokens.
    """
    V = logits.shape[-1]
    x = logits.reshape(-1, V)
    buckets = buckets or max(256, min(V // 4, 1 << 16))
    probs = torch.softmax(x, dim=-1)
    top = x.amax(-1, keepdim=True)
    # the last kept token lies within `reach` of the maximum (and the tail bucket collects the rest)
    reach = torch.log(probs.amax(-1, keepdim=True) * (V / (1 - top_p))) * (1 + 1e-3)
    bucket = ((top - x) * ((buckets - 1) / reach)).clamp_(0, buckets - 1).long()
    mass = torch.zeros(x.shape[0], buckets, dtype=torch.float64, device=x.device)
    mass.scatter_add_(1, bucket, probs.double())
    cumulative = mass.cumsum(-1)
    crossing = (cumulative <= top_p).sum(-1, keepdim=True)  # the first bucket whose cumulative mass exceeds top_p
    unresolved = crossing.squeeze(1) >= buckets - 1  # rounding put the boundary in the tail bucket
    crossing = crossing.clamp(max=buckets - 1)
    above = torch.where(crossing > 0, cumulative.gather(1, (crossing - 1).clamp(min=0)), 0.0)
    in_crossing = bucket == crossing
    count = in_crossing.sum(-1, keepdim=True)
    unresolved |= count.squeeze(1) > max_candidates
    k = max(1, int(count.clamp(max=max_candidates).max()))  # one host sync
    values, index = torch.where(in_crossing, x, float("-inf")).topk(k, dim=-1)
    # the candidates in the sort's order: by logit, equal logits by token index
    by_index = index.sort(dim=-1).indices
    values, index = values.gather(1, by_index), index.gather(1, by_index)
    by_value = values.sort(dim=-1, descending=True, stable=True).indices
    values, index = values.gather(1, by_value), index.gather(1, by_value)
    real = torch.arange(k, device=x.device) < count
    candidate_probs = torch.where(real, probs.gather(1, index).double(), 0.0)
    mass_before = above + candidate_probs.cumsum(-1) - candidate_probs
    kept = ((mass_before <= top_p) & real).sum(-1, keepdim=True)  # >= 1: the bucket's first token is kept
    last = (kept - 1).clamp(min=0)
    first_dropped = kept.clamp(max=k - 1)
    has_dropped = kept < count
    margin = V * 2.0 ** -48  # far above fp64 summation error of V terms; the decision is never that close
    last_mass = mass_before.gather(1, last)
    next_mass = torch.where(has_dropped, mass_before.gather(1, first_dropped), above + mass.gather(1, crossing))
    threshold = values.gather(1, last)
    unresolved |= ((kept == 0) | (last_mass > top_p - margin) | (next_mass <= top_p + margin)).squeeze(1)
    # the kept tokens: above the last kept logit, or equal to it and not after it in token order
    after_last = torch.arange(V, device=x.device) > index.gather(1, last)
    filtered = x.masked_fill((x < threshold) | ((x == threshold) & after_last), float("-inf"))
    rows = unresolved.nonzero().squeeze(1)  # rare: the reference sort, on these rows only
    if rows.numel():
        filtered[rows] = sorted_nucleus_filter(x[rows], top_p)
    return filtered.view(logits.shape)


# elements of one row chunk of vocabulary-wide work: its transients stay that size (on a CPU, in cache)
CHUNK_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 25}


def row_chunks(rows: int, width: int, device: torch.device) -> list[slice]:
    """Even slices of ``rows`` rows of ``width`` elements, each at most about ``CHUNK_ELEMENTS``."""
    per_chunk = max(1, CHUNK_ELEMENTS.get(device.type, CHUNK_ELEMENTS["cuda"]) // width)
    size = -(-rows // -(-rows // per_chunk))  # as even as possible: no sliver of a chunk at the end
    return [slice(start, min(start + size, rows)) for start in range(0, rows, size)]


def sample_from_probs(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: one token per row of ``probs [..., V]`` from ``uniforms [...]``."""
    cdf = probs.cumsum(-1)
    target = (uniforms * cdf[..., -1]).unsqueeze(-1)
    return torch.searchsorted(cdf.contiguous(), target.contiguous()).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def sampling_probs(logits: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """The distribution tokens are drawn from: temperature, then top-k and top-p, in fp32."""
    return torch.softmax(top_p_top_k_filter(logits.float() / cfg.temperature, cfg.top_p, cfg.top_k), dim=-1)


def tempered_probs(logits: torch.Tensor, cfg: SamplerConfig) -> torch.Tensor:
    """``softmax(top_k(logits / temperature))`` in fp32: the distribution before the nucleus."""
    return torch.softmax(top_p_top_k_filter(logits.float() / cfg.temperature, 1.0, cfg.top_k), dim=-1)


def sample_nucleus(logits: torch.Tensor, cfg: SamplerConfig, uniform, rounds: int = 2,
                   probs: torch.Tensor | None = None) -> torch.Tensor:
    """Draw from ``sampling_probs(logits, cfg)`` exactly, without sorting the vocabulary.

    Rejection sampling: draw from the tempered (top-k) distribution and accept a token when the
    mass of the tokens more probable than it is at most ``top_p`` (it is then in the nucleus).
    Each round rejects at most ``1 - top_p`` of the rows; the few rows left after ``rounds`` are
    drawn through the nucleus filter. ``uniform(round)`` gives one draw per row, ``[...]``;
    ``probs`` is ``tempered_probs(logits, cfg)`` when the caller has it already.
    """
    probs = tempered_probs(logits, cfg) if probs is None else probs
    tokens = sample_from_probs(probs, uniform(0))
    if cfg.top_p >= 1.0:
        return tokens
    rejected = mass_above(probs, tokens) > cfg.top_p
    rows = rejected.flatten().nonzero().squeeze(1)  # one host sync; later rounds see these rows only
    if rows.numel():
        flat_logits, flat_probs = logits.reshape(-1, logits.shape[-1])[rows], probs.reshape(-1, probs.shape[-1])[rows]
        draws = [u.flatten()[rows] for u in map(uniform, range(1, rounds + 1))]
        retry = torch.zeros_like(rows)
        pending = torch.ones_like(rows, dtype=torch.bool)
        for u in draws[:-1]:
            candidate = sample_from_probs(flat_probs, u)
            take = pending & (mass_above(flat_probs, candidate) <= cfg.top_p)
            retry = torch.where(take, candidate, retry)
            pending &= ~take
        # the rows still rejected draw from the nucleus itself (computed for all retried rows: no second sync)
        retry = torch.where(pending, sample_from_probs(sampling_probs(flat_logits, cfg), draws[-1]), retry)
        tokens = tokens.flatten().index_put((rows,), retry).view(tokens.shape)
    return tokens


@compilable  # one fused pass instead of three
def mass_above(probs: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The probability mass of the tokens strictly more probable than ``tokens``."""
    p_token = probs.gather(-1, tokens.unsqueeze(-1))
    return (probs * (probs > p_token)).sum(-1)  # as torch.where(probs > p_token, probs, 0), twice as fast


def entropy(logits: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
    """``H(softmax(logits))`` per row; -inf logits (p = 0) add nothing. ``probs``: ``softmax(logits)`` if known.

    The fast path (``fastpaths.enable("entropy")``) needs no logarithm per token:
    ``-log p = log S - (z - max z)`` with ``S = 1 / max p``, so ``H = log S - sum(p (z - max z))``,
    4x cheaper and as precise as summing ``p log p`` (both terms are >= 0: nothing cancels in a
    peaked row), but not bit for bit the same.
    """
    probs = torch.softmax(logits, dim=-1) if probs is None else probs
    if not fastpaths.enabled("entropy"):
        return -torch.special.xlogy(probs, probs).sum(-1)  # xlogy: 0 log 0 = 0
    shifted = logits - logits.amax(-1, keepdim=True)
    return -probs.amax(-1).log() - torch.nansum(shifted.mul_(probs), dim=-1)


def confidence(alg: str, probs: torch.Tensor, tokens: torch.Tensor, uniforms: torch.Tensor,
               logits: torch.Tensor) -> torch.Tensor:
    """How sure the model is at each position; the most confident are committed first.

    ``probs`` is ``softmax(logits)``: the filtered, tempered distribution tokens are drawn from.
    """
    if alg == "origin":
        return uniforms
    if alg == "maskgit_plus":
        return probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    if alg == "topk_margin":
        top2 = probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]
    return -entropy(logits, probs)  # entropy: negative entropy


def counters(step: int, stream: int, draw: int = 0) -> tuple:
    """The random counter of a step's ``stream``: ``draw`` 0 is the sampler's own draw, every other
    ``draw`` an independent one (a proposal) of the same row and step."""
    return (step, stream) if draw == 0 else (step, RowRandom.PROPOSALS, draw, stream)


def scatter_columns(response: torch.Tensor, positions: torch.Tensor, values: torch.Tensor,
                    padded: bool | None = None) -> torch.Tensor:
    """``response [N, L, ...]`` with ``values [N, n, ...]`` written at ``positions [N, n]``; a position
    ``L`` (the padding of rows with fewer masked columns, see ``StepState.valid``) writes nothing.
    ``padded``: whether any position is padding, when the caller knows (``StepState.valid is not None``);
    None looks, which costs a host synchronization."""
    L = response.shape[1]
    index = positions.view(*positions.shape, *[1] * (values.dim() - 2)).expand(values.shape)
    if not (bool((positions >= L).any()) if padded is None else padded):
        return response.scatter(1, index, values)
    extended = torch.cat([response, response[:, :1]], dim=1)
    return extended.scatter(1, index, values)[:, :L]


def draw_and_commit(response: torch.Tensor, positions: torch.Tensor, logits: torch.Tensor, step: CommitStep,
                    rng: RowRandom, cfg: SamplerConfig, eos: torch.Tensor, guided: torch.Tensor | None = None,
                    draw: int = 0, mask_id: int | None = None) -> torch.Tensor:
    """The response ``[N, L]`` after one step: tokens drawn at the masked ``positions [N, n]`` and the
    step's commit rule applied to the positions of its block, the most confident first: its fixed
    ``step.count``, or (``cfg.threshold``) every one whose drawn token is more probable than the
    threshold and at least one (all of them at ``step.last``).

    ``logits [N, n, V]`` rank the positions (and give the tokens); ``guided`` logits, when given, give
    the tokens instead (reward guidance ranks on the model's own distribution). The rows' draws are
    keyed by ``step.index``; ``draw`` picks an independent stream (see :func:`counters`). Positions
    ``L`` are padding (rows with fewer masked columns) and never commit.
    """
    device = logits.device
    N, n, V = logits.shape
    noise = rng.uniform((n,), *counters(step.index, RowRandom.COMMIT, draw))
    tokens = torch.empty(N * n, dtype=torch.long, device=device)
    key = torch.empty(N * n, device=device)
    drawn_prob = torch.empty(N * n, device=device) if cfg.threshold is not None else None
    token_draws = functools.cache(
        lambda r: rng.uniform((n,), *counters(step.index, RowRandom.TOKENS, draw), r).flatten())
    guided = None if guided is None else guided.reshape(N * n, V)
    # tokens and confidences row chunk by row chunk: vocabulary-wide transients stay at chunk size
    for rows in row_chunks(N * n, V, device):
        draws = lambda r, rows=rows: token_draws(r)[rows]  # noqa: E731
        with section("pre_guidance_filter"):  # pre-guidance: ranks the positions, as sampling_probs
            filtered = top_p_top_k_filter(logits.reshape(N * n, V)[rows].float() / cfg.temperature, cfg.top_p,
                                          cfg.top_k)
            probs = torch.softmax(filtered, dim=-1)
        with section("sampling_remasking"):
            tokens[rows] = sample_nucleus(guided[rows], cfg, draws) if guided is not None else \
                sample_from_probs(probs, draws(0))
            key[rows] = confidence(cfg.alg, probs, tokens[rows], noise.flatten()[rows], filtered)
            if drawn_prob is not None:
                drawn_prob[rows] = probs.gather(-1, tokens[rows, None]).squeeze(-1)
    tokens, key = tokens.view(N, n), key.view(N, n)
    with section("sampling_remasking"):
        # which positions to commit: ranked on the pre-guidance distribution
        if cfg.alg_temp:
            key = key / cfg.alg_temp - torch.log(-torch.log(noise))  # Gumbel-top-k = sampling w/o replacement
        is_eos = torch.isin(tokens, eos)
        if cfg.eos_last:
            key = torch.where(is_eos, key - 1e6, key)
        in_block = (positions >= step.block_start) & (positions < step.block_end)
        key = key.masked_fill(~in_block, float("-inf"))
        if cfg.threshold is None:
            chosen = key.topk(step.count, dim=-1).indices
            return response.scatter(1, positions.gather(1, chosen), tokens.gather(1, chosen))
        commit = in_block.clone() if step.last else in_block & (drawn_prob.view(N, n) > cfg.threshold)
        if cfg.eos_last and not step.last:
            commit &= ~is_eos
        commit.scatter_(1, key.argmax(-1, keepdim=True), True)  # at least the most confident
        commit &= in_block
        return scatter_columns(response, positions, torch.where(commit, tokens, mask_id))


@dataclass
class StepState:
    """What a step hook sees: the state of the step's rows before the step's tokens are drawn.

    Under the threshold rule (``SamplerConfig.threshold``) a row that has committed
    its block already takes no part in the block's later steps: the state then holds the batch's
    rows ``rows`` only, and rows differ in their number of masked positions (``valid``). A
    block-causal model's rows whose blocks start at different columns are stepped in groups (see
    ``generate``): the state then holds one group's rows, all of each of its prompts' rows.
    """

    step: CommitStep  # index, time t, block, how many positions it commits
    tokens: torch.Tensor  # [N, L] response tokens, ``mask_id`` where still masked
    positions: torch.Tensor  # [N, n] the masked columns the logits cover, in column order (padding: L)
    logits: torch.Tensor  # [N, n, V] the dLLM's logits at those columns (mask token at -inf)
    rng: RowRandom  # each row's random streams
    # the step's draw-and-commit rule, bound to this state (see ``propose``); None outside the sampler
    commit: Callable[..., torch.Tensor] | None = field(default=None, repr=False)
    rows: torch.Tensor | None = None  # [N] the batch rows these are (None: all, in order)
    valid: torch.Tensor | None = None  # [N, n] False at padding positions (None: none is padding)
    # the response columns a reward model sees: ``[0, horizon)``; later blocks are not computed
    # (block-causal models, the dual cache) and are left out of its input
    horizon: int | None = None
    # every row of the step's group takes part (so all of each prompt's rows): a hook may reorder rows
    # only then. ``rows`` is None only when the group is the whole batch
    whole_group: bool = True

    def propose(self, logits: torch.Tensor | None = None, draw: int = 0) -> torch.Tensor:
        """The response ``[N, L]`` after this step under the sampler's own rule, tokens drawn from
        ``logits [N, n, V]`` (default: the step's), which also rank the positions to commit.

        ``draw`` indexes independent random streams of each row: ``draw=0`` is the sampler's own
        draw, so ``propose()`` is exactly the step the sampler takes unguided.
        """
        return self.commit(self.logits if logits is None else logits, draw=draw)


@dataclass
class StepUpdate:
    """What a step hook may change. Rows are reordered first; ``logits``, ``next_tokens`` and ``stats``
    are in the new order."""

    logits: torch.Tensor | None = None  # [N, n, V] draw this step's tokens from these (e.g. guided) logits
    order: torch.Tensor | None = None  # [N] new row i continues old row order[i] (resampling particles)
    row_keys: torch.Tensor | None = None  # [N] random keys of the reordered rows; default: keys move with rows
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # [N] per-row statistics for the trace
    # [N, L] the response after the step (e.g. a chosen ``StepState.propose``): committed as it is,
    # instead of the sampler's own draw
    next_tokens: torch.Tensor | None = None


class StepHook(Protocol):
    """Called at every denoising step that commits tokens (see ``entrgi.sampling.guidance.RewardGuidance``)."""

    def __call__(self, state: StepState) -> StepUpdate | None: ...


ROW_COSTS = ("dllm_forwards", "dllm_columns", "dllm_head_columns", "dllm_attention_keys", "denoising_steps",
             "guided_steps", "guided_positions")


@dataclass
class GenerationOutput:
    tokens: torch.Tensor  # [N, L] the response tokens
    # per executed step: step, committed, per-row stats; a batch stepped in groups (``generate``) has
    # each group's steps, with "committed" NaN at the other groups' rows
    trace: list[dict] = field(default_factory=list)
    dllm_forwards: int = 0  # sequences through the dLLM
    ancestors: torch.Tensor | None = None  # [N] the input row each final row descends from (None: itself)
    # [N] per batch row slot (not following reordered rows): the work it took. dllm_forwards; the
    # columns computed (queries; cached ones are free), the columns through the output layer, the
    # keys the queries attended to (summed over queries); denoising steps taken; guided steps
    # (a hook gave logits or tokens) and the masked positions at them
    row_costs: dict[str, torch.Tensor] = field(default_factory=dict)


def reorder_trace(trace: list[dict], order: torch.Tensor) -> None:
    """Re-index the per-row statistics of earlier steps, so every row's trace follows its lineage."""
    for entry in trace:
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                entry[name] = value[order]


class Canvas:
    """The rows' prompt + response tokens and the dLLM work of a step: the logits at the masked
    columns of the step's window, from a full forward or through a cache (``SamplerConfig.cache``,
    the exact one of a block-causal model), counting the columns it computes per row.

    A block-causal model's rows share their blocks' columns: ``lead`` prompt columns, the end of
    their prompts, are in the response's first block (see :func:`first_block`). The prompt's whole
    blocks are cached once per row; the first block's steps compute its ``lead`` prompt columns too."""

    def __init__(self, dllm, x: torch.Tensor, attention: torch.Tensor, P: int, cfg: SamplerConfig,
                 costs: dict[str, torch.Tensor], exact: bool, lead: int = 0):
        self.dllm, self.x, self.attention, self.P, self.cfg, self.costs = dllm, x, attention, P, cfg, costs
        self.exact, self.lead = exact, lead  # exact: a block-causal model, whose cache is exact
        self.cache = None  # KVCache of all rows: the prompt and committed blocks (exact), or the block's refresh
        if self.exact and P > lead:  # the keys and values of the prompt's whole blocks, once per row
            self.cache = self.forward(slice(None), slice(0, P - lead), None, keep_columns=slice(0, P - lead))[1]

    def window_end(self, step: CommitStep) -> int:
        """The response columns a step's logits cover end here: the block's end when later blocks are
        not computed (block-causal, dual cache), else the response's."""
        return step.block_end if self.exact or self.cfg.cache == "dual" else self.cfg.gen_length

    def block_columns(self, step: CommitStep) -> slice:
        """A block-causal model's canvas columns of the step's block (the first block's start in the prompt)."""
        return slice(self.P + step.block_start - (self.lead if step.block_start == 0 else 0), self.P + step.block_end)

    def forward(self, rows: torch.Tensor | slice, query: slice, columns: torch.Tensor | None,
                cache=None, keep_columns: slice | tuple[slice, ...] | None = None, hidden_at: int | None = None):
        """``cached_logits`` of ``rows`` (a cache of those rows, keeping ``keep_columns``), counted."""
        x, attention = self.x[rows], self.attention[rows]
        keys = query.stop - query.start + (0 if cache is None else cache.columns.numel())
        keep = None
        if keep_columns is not None:
            queries = torch.arange(query.start, query.stop, device=x.device)
            every = queries if cache is None else torch.cat([cache.columns, queries])
            keep = torch.zeros_like(every, dtype=torch.bool)
            for part in keep_columns if isinstance(keep_columns, tuple) else (keep_columns,):
                keep |= (every >= part.start) & (every < part.stop)
        logits, new_cache = self.dllm.cached_logits(x, attention, self.P, query, cache, columns, keep, hidden_at)
        width = query.stop - query.start
        self.count(rows, width, width * keys, 0 if columns is None else columns.shape[1])
        return logits, new_cache

    def count(self, rows: torch.Tensor | slice, columns: int, attention_keys: int, head_columns: int) -> None:
        """One dLLM forward of ``rows``: the columns through its layers, the keys they attended to, the
        columns through its output layer."""
        self.costs["dllm_forwards"][rows] += 1
        self.costs["dllm_columns"][rows] += columns
        self.costs["dllm_attention_keys"][rows] += attention_keys
        self.costs["dllm_head_columns"][rows] += head_columns

    def logits(self, step: CommitStep, first_of_block: bool, rows: torch.Tensor | None,
               positions: torch.Tensor) -> torch.Tensor:
        """The logits ``[len(rows), n, V]`` at ``positions`` (response columns) of ``rows`` (None: all)."""
        P, L = self.P, self.cfg.gen_length
        index = slice(None) if rows is None else rows
        columns = positions.clamp(max=self.window_end(step) - 1)  # padding reads the window's last column
        start, end = P + step.block_start, P + self.window_end(step)
        cache = self.cache if rows is None or self.cache is None else self.cache.rows(rows)
        if self.exact:
            return self.forward(index, self.block_columns(step), columns - step.block_start, cache)[0]
        if self.cfg.cache == "none":  # the whole canvas, the LM head at the masked columns only
            logits = self.dllm.logits(self.x[index], self.attention[index], start=P, columns=columns)
            self.count(index, P + L, (P + L) ** 2, columns.shape[1])
            return logits
        if first_of_block:  # refresh: a full forward, keeping the columns outside the block's window
            keep = (slice(0, start),) + ((slice(end, P + L),) if self.cfg.cache == "dual" else ())
            # (every row takes part in its block's first step, so the cache holds every row)
            logits, self.cache = self.forward(index, slice(0, P + L), columns, keep_columns=keep, hidden_at=start - 1)
            return logits
        return self.forward(index, slice(start, end), columns - step.block_start, cache)[0]

    def commit_block(self, step: CommitStep) -> None:
        """A block-causal model's finished block: its keys and values join the cache (one forward)."""
        if self.exact and step.block_end < self.cfg.gen_length:
            block = self.block_columns(step)
            self.cache = self.forward(slice(None), block, None, self.cache, keep_columns=slice(0, block.stop))[1]


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
    may replace the logits tokens are drawn from (reward guidance), propose the next state and
    reorder the rows (particle resampling). Prompts are left-padded to ``prompt_width``: a width
    fixed for a whole run keeps each row's numbers bit-identical whatever batch it is in.
    ``on_step(done, total)`` follows each step that commits tokens (progress display).

    The block modes (a cache, the threshold rule, a block-causal model) step block by block; under
    the threshold rule rows commit different numbers of positions, and a row that has committed
    its block does no work at the block's later steps. Every draw is keyed by the row and the
    step's index in the plan, which in a block is the row's own step count there (a row takes part
    from its block's first step until it is done), so a row's samples never depend on its batch.

    A block-causal model's blocks are counted from each prompt's first token, so rows whose prompt
    lengths differ modulo the block size have their blocks at different response columns
    (:func:`first_block`): each such group of rows (a prompt's rows are in one) is denoised on its
    own, one group after the other, and the hook sees that group's rows (``StepState.rows``).
    """
    device = dllm.device
    L = cfg.gen_length
    attention_structure = getattr(dllm, "attention", AttentionStructure())
    check_structure(cfg, attention_structure)
    prompt, prompt_mask = dllm.pad_prompts(prompt_ids, prompt_width)
    P = prompt.shape[1]
    dllm.check_length(P + L)
    x = torch.cat([prompt, torch.full((len(prompt_ids), L), dllm.mask_id, device=device)], dim=1)
    attention = torch.cat([prompt_mask, torch.ones(len(prompt_ids), L, dtype=prompt_mask.dtype, device=device)], 1)
    N = x.shape[0]
    offsets = [first_block(len(ids), attention_structure) for ids in prompt_ids]
    # with the fixed plan a step that commits nothing draws nothing and guidance starts afresh each
    # step: skipping it is exact. The threshold rule commits at least one position at every step.
    plans = {offset: [step for step in commit_plan(L, cfg.steps, block_length(cfg, attention_structure), cfg.eps,
                                                   offset) if step.count > 0 or cfg.threshold is not None]
             for offset in sorted(set(offsets))}
    progress = Progress(on_step, sum(map(len, plans.values())))
    if len(plans) == 1:
        return denoise(dllm, x, attention, P, RowRandom(row_keys, device=device), cfg, *plans.items(), hook, None,
                       progress)
    out = GenerationOutput(tokens=x[:, P:], row_costs={name: torch.zeros(N, dtype=torch.long, device=device)
                                                       for name in ROW_COSTS})
    ancestors = torch.arange(N, device=device)
    keys = torch.as_tensor(row_keys, dtype=torch.int64)
    for offset, plan in plans.items():
        rows = torch.tensor([i for i, o in enumerate(offsets) if o == offset], device=device)
        part = denoise(dllm, x[rows], attention[rows], P, RowRandom(keys[rows.cpu()], device=device), cfg,
                       (offset, plan), hook, rows, progress)
        x[rows, P:] = part.tokens
        out.dllm_forwards += part.dllm_forwards
        for name, value in part.row_costs.items():
            out.row_costs[name][rows] = value
        if part.ancestors is not None:
            ancestors[rows] = rows[part.ancestors]
        for entry in part.trace:  # "committed" is NaN for the rows of the other groups
            out.trace.append({name: value if name == "step" else spread(
                value if isinstance(value, torch.Tensor) else torch.full((len(rows),), value, device=device),
                rows, N, float("nan")) for name, value in entry.items()})
    out.tokens = x[:, P:]
    if not torch.equal(ancestors, torch.arange(N, device=device)):
        out.ancestors = ancestors
    return out


@dataclass
class Progress:
    """``on_step(done, total)`` over the plans of every group of rows, one group after the other."""

    on_step: Callable[[int, int], None] | None
    total: int
    before: int = 0  # the steps of the groups done

    def __call__(self, done: int) -> None:
        if self.on_step is not None:
            self.on_step(self.before + done, self.total)


def denoise(dllm, x: torch.Tensor, attention: torch.Tensor, P: int, rng: RowRandom, cfg: SamplerConfig,
            planned: tuple[int, list[CommitStep]], hook: StepHook | None, group: torch.Tensor | None,
            progress: Progress) -> GenerationOutput:
    """:func:`generate`'s steps over rows whose blocks share their columns (``planned``: the first
    block's length and the plan). ``group``: the batch rows these are (the hook's ``StepState.rows``
    name batch rows); None: the whole batch. The output is in these rows' order."""
    device = x.device
    L = cfg.gen_length
    offset, plan = planned
    eos = torch.tensor(dllm.eos_ids, device=device)
    N = x.shape[0]
    out = GenerationOutput(tokens=x[:, P:], row_costs={name: torch.zeros(N, dtype=torch.long, device=device)
                                                       for name in ROW_COSTS})
    column = torch.arange(L, device=device)
    ancestors = torch.arange(N, device=device)
    structure = getattr(dllm, "attention", AttentionStructure())
    # the prompt columns in the first block: the end of a prompt that does not fill whole blocks
    lead = -offset % structure.block_size if structure.is_block_causal else 0
    canvas = Canvas(dllm, x, attention, P, cfg, out.row_costs, structure.is_block_causal, lead)
    block_done = set()
    for done, step in enumerate(plan, 1):
        if step.block_start in block_done:
            continue
        first_of_block = done == 1 or plan[done - 2].block_start != step.block_start
        response = x[:, P:]
        window_end = canvas.window_end(step)
        rows = None
        if cfg.threshold is None:
            # the n masked columns of each row's window, in column order (every row has exactly n)
            n = step.num_masked - (L - window_end)
            valid = None
        else:
            masked = (response == dllm.mask_id) & (column >= step.block_start) & (column < window_end)
            active = masked[:, step.block_start:step.block_end].any(-1)
            if not active.all():
                rows = active.nonzero().squeeze(1)
                masked = masked[rows]
            n = int(masked.sum(-1).max())  # one host sync
        step_response = response if rows is None else response[rows]
        positions = torch.sort(torch.where(step_response == dllm.mask_id, column, column + L), dim=-1).values[:, :n]
        if cfg.threshold is not None:
            positions = torch.where(positions < window_end, positions, L)  # padding: rows with fewer masked
            valid = positions < L
            valid = None if valid.all() else valid
        with section("dllm_forward"):
            logits = canvas.logits(step, first_of_block, rows, positions)
            logits[..., dllm.mask_id] = float("-inf")  # never sample the mask token itself
        out.dllm_forwards += step_response.shape[0]
        step_rng = rng if rows is None else RowRandom(rng.keys[rows], device=device)
        index = slice(None) if rows is None else rows
        out.row_costs["denoising_steps"][index] += 1

        commit = functools.partial(draw_and_commit, step_response, positions, step=step, rng=step_rng, cfg=cfg,
                                   eos=eos, mask_id=dllm.mask_id)
        # the hook names batch rows
        hook_rows = rows if group is None else group if rows is None else group[rows]
        state = StepState(step, step_response, positions, logits, step_rng, commit, hook_rows, valid,
                          None if window_end == L else window_end, whole_group=rows is None)
        update = (hook(state) if hook is not None else None) or StepUpdate()
        if update.order is not None:  # whole particles move: tokens, logits and random streams
            if rows is not None:
                raise ValueError("a step hook may reorder rows only at a step every row of the group takes part "
                                 "in (StepState.whole_group)")
            order = update.order
            x, attention, positions, logits = x[order], attention[order], positions[order], logits[order]
            canvas.x, canvas.attention = x, attention
            if canvas.cache is not None:
                canvas.cache = canvas.cache.rows(order)
            step_response = x[:, P:]
            step_rng = rng = RowRandom(rng.keys[order] if update.row_keys is None else update.row_keys, device=device)
            ancestors = ancestors[order]
            reorder_trace(out.trace, order)
        if update.logits is not None or update.next_tokens is not None:
            out.row_costs["guided_steps"][index] += 1
            out.row_costs["guided_positions"][index] += n if valid is None else valid.sum(-1)
        if update.next_tokens is not None:
            after = update.next_tokens
        else:
            after = draw_and_commit(step_response, positions, logits, step, step_rng, cfg, eos, guided=update.logits,
                                    mask_id=dllm.mask_id)
        committed = step.count if cfg.threshold is None else spread(
            (step_response == dllm.mask_id).sum(-1) - (after == dllm.mask_id).sum(-1), rows, N, 0)
        if rows is None:
            x[:, P:] = after
        else:
            x[rows, P:] = after
        out.trace.append({"step": step.index, "committed": committed,
                          **{name: spread(value, rows, N, float("nan")) for name, value in update.stats.items()}})
        finished = step.last or (cfg.threshold is not None and  # one host sync: has every row done the block?
                                 bool((x[:, P + step.block_start:P + step.block_end] != dllm.mask_id).all()))
        if finished:
            block_done.add(step.block_start)
            canvas.commit_block(step)
        progress(done)

    progress.before += len(plan)
    out.tokens = x[:, P:]
    if not torch.equal(ancestors, torch.arange(x.shape[0], device=device)):
        out.ancestors = ancestors
    return out


def spread(value: torch.Tensor, rows: torch.Tensor | None, N: int, fill: float) -> torch.Tensor:
    """A per-row statistic of the step's ``rows`` as ``[N]``: ``fill`` for the rows that took no part."""
    if rows is None:
        return value
    full = torch.full((N,), fill, dtype=value.dtype if value.is_floating_point() or fill == 0 else torch.float32,
                      device=value.device)
    full[rows] = value.to(full.dtype)
    return full
