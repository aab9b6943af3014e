"""Reward guidance: the relaxation of masked positions and the inner optimization of the logits.

At a guided step the logits at masked positions become a leaf ``phi`` and take ``inner_steps``
Adam steps on ``-sum(reward)``. Each masked position reaches the reward model as

    e = soft + sg(w * (hard - soft)),  soft = softmax(phi / tau) @ E,  hard = E[x],  x ~ top-p(phi / tau)

one formula for every method: the schedule picks ``w`` (0: continuous relaxation, 1:
straight-through, entropy: EntRGi). The forward value is ``(1 - w) soft + w hard`` and the
gradient always flows through ``soft``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from entrgi.bookkeeping.timing import section
from entrgi.errors import ConfigError
from entrgi.models.reward import RewardContext, RewardModel
from entrgi.sampling.rng import RowRandom
from entrgi.sampling.sampler import (
    SamplerConfig,
    StepState,
    StepUpdate,
    row_chunks,
    sample_nucleus,
    scatter_columns,
)
from entrgi.sampling.schedules import Schedule, always_zero


def relaxed_embeddings(phi: torch.Tensor, table: torch.Tensor, temperature: float, weight: torch.Tensor,
                       hard_tokens: torch.Tensor | None) -> torch.Tensor:
    """``soft + sg(w * (hard - soft))`` for logits ``phi [..., V]``, embeddings ``table [V, H]``.

    ``weight [...]`` is w per position and ``hard_tokens [...]`` the sampled token x.
    """
    return relax(torch.softmax(phi.float() / temperature, dim=-1), table, weight, hard_tokens)


def relax(probs: torch.Tensor, table: torch.Tensor, weight: torch.Tensor, hard_tokens: torch.Tensor | None) -> torch.Tensor:
    """:func:`relaxed_embeddings` from ``probs = softmax(phi / tau)`` (fp32, with its gradient).

    ``hard_tokens=None`` stands for ``w = 0`` everywhere: the embedding is ``soft`` itself. The result is
    on the table's device (the reward model's), whatever device the others are on (the dLLM's).
    """
    soft = probs.to(table.device, table.dtype) @ table
    if hard_tokens is None:
        return soft
    hard = table[hard_tokens.to(table.device)]
    return soft + (weight.unsqueeze(-1).to(table.device, soft.dtype) * (hard - soft)).detach()


def guided_steps(steps: int, every: int = 1, window: tuple[float, float] | None = None) -> set[int] | None:
    """The step indices to guide: every ``every``-th of the ``steps``, within ``window``.

    ``window = (start, stop)`` are fractions of the denoising, e.g. ``(0, 0.5)`` guides the
    first half. ``None`` (``every=1``, no window) guides every step. Guiding fewer steps is
    cheaper and changes the samples.
    """
    if every < 1:
        raise ConfigError(f"method.every={every} must be >= 1 (1 guides every step)")
    if window is not None:
        start, stop = window
        if not 0 <= start < stop <= 1:
            raise ConfigError(f"method.window={list(window)} must be [start, stop] with 0 <= start < stop <= 1")
    if every == 1 and window is None:
        return None
    start, stop = window if window is not None else (0.0, 1.0)
    return {i for i in range(0, steps, every) if start * steps <= i < stop * steps}


def first_eos_keep(tokens: torch.Tensor, eos_ids: torch.Tensor) -> torch.Tensor:
    """1 for the columns strictly before each row's first EOS, else 0."""
    is_eos = torch.isin(tokens, eos_ids)
    return (is_eos.cumsum(-1) == 0).long()


@dataclass
class RewardGuidance:
    """A step hook that optimizes the masked logits towards higher reward before tokens are drawn."""

    reward_model: RewardModel
    table: torch.Tensor  # E: reward input embeddings indexed by dLLM token id, [V, H]
    context: RewardContext  # chat prefix and suffix per row
    schedule: Schedule  # (phi, t) -> w per position
    sampler: SamplerConfig  # tau, top-p, top-k of the hard sample
    eos_ids: torch.Tensor
    inner_steps: int = 3  # M
    lr: float = 0.5  # eta
    steps: set[int] | None = None  # the step indices to guide (see ``guided_steps``); None: all
    # diagnostics.relaxation: also score each inner step's hard sample, for ``relaxation_fidelity``
    diagnose_relaxation: bool = False
    rows_per_prompt: int = 1  # K: the rows whose scores the fidelity's correlation pools

    def __call__(self, state: StepState) -> StepUpdate | None:
        if self.steps is not None and state.step.index not in self.steps:
            return None
        logits, stats = self.optimize(state.logits, state.positions, state.tokens, state.step.index, state.rng,
                                      state.step.t, rows=state.rows, valid=state.valid, horizon=state.horizon,
                                      committed_until=state.step.block_start, whole_prompts=state.whole_group)
        return StepUpdate(logits=logits, stats=stats)

    def optimize(self, logits: torch.Tensor, positions: torch.Tensor, response: torch.Tensor, step: int,
                 rng: RowRandom, t: float = 1.0, rows: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                 horizon: int | None = None, committed_until: int = 0,
                 whole_prompts: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the optimized logits ``phi [N, n, V]`` and per-row statistics of the step.

        ``logits [N, n, V]`` are the logits at the ``positions [N, n]`` that are still masked in
        ``response [N, L]``; ``t`` is the step's diffusion time, for schedules that read it. The
        block modes (see ``StepState``) give the batch ``rows`` these are, the ``valid`` positions
        (the others are padding), the ``horizon``: the reward model sees the response's columns
        before it only (later blocks are not computed), and ``committed_until``: the columns before
        it are committed in every row (earlier blocks), so the reward model runs them once per step,
        into its context, and each inner step only the columns from there to the horizon.
        ``whole_prompts``: the rows hold all of each of their prompts' rows (``StepState.whole_group``).
        """
        N, n, V = logits.shape
        L = response.shape[1]
        start, end = committed_until, L if horizon is None else horizon
        context = self.context if rows is None else self.context.rows(rows)
        phi = ChunkedLogits(logits.detach().reshape(N * n, V), self.lr, self.sampler.temperature)
        # the reward model's device (reward.device): embeddings go there, their gradients come back to phi
        reward_device = self.table.device
        if start > 0:  # the EOS cut of committed columns does not change during the step
            keep_committed = first_eos_keep(response[:, :start], self.eos_ids).to(reward_device)
            context = self.reward_model.extend_context(context, self.table[response[:, :start].to(reward_device)],
                                                       keep_committed)
        # [N, end - start, H]: the columns the inner steps score; committed tokens enter as their embeddings
        committed = self.table[response[:, start:end].to(reward_device)]
        # padding positions (L) become the scored width's padding
        reward_positions = (positions - start).clamp(max=end - start).to(reward_device)
        padded = valid is not None  # known once per step: no host synchronization per inner step
        weights, rewards, hard_rewards = [], [], []
        for inner in range(self.inner_steps):
            with section("relaxation"), torch.no_grad():
                hard_draws = None if always_zero(self.schedule) and not self.diagnose_relaxation else \
                    (lambda r, inner=inner: rng.uniform((n,), step, RowRandom.HARD, inner, r).flatten())
                relaxed, weight, guess, hard = phi.relax(self.table, self.schedule, t, self.sampler, hard_draws)
                relaxed, weight = relaxed.view(N, n, -1).detach().requires_grad_(True), weight.view(N, n)
                # hide what follows the first EOS (argmax of phi at masked columns)
                keep = first_eos_keep(scatter_columns(response, positions, guess.view(N, n), padded), self.eos_ids)
                keep = keep[:, start:end].to(reward_device)
            with section("relaxation"):
                embeds = scatter_columns(committed, reward_positions, relaxed.to(committed.dtype), padded)
            with section("reward_forward"):
                scores = self.reward_model.score_embeddings(context, embeds, keep)
                if self.diagnose_relaxation:
                    hard_rewards.append(self.hard_score(committed, reward_positions, hard.view(N, n), keep,
                                                        context, padded).to(logits.device))
            with section("reward_backward"):
                (-scores.sum()).backward()  # down to the relaxed embeddings; phi's part is ChunkedLogits.step
            with section("optimizer"):
                phi.step(relaxed.grad.view(N * n, -1), self.table)
            weights.append(weight.mean(-1) if valid is None else (weight * valid).sum(-1) / valid.sum(-1))
            rewards.append(scores.detach().to(logits.device))
        stats = {
            "entropy_weight": torch.stack(weights).mean(0),  # [N]
            "guided_reward": rewards[-1],
        }
        if self.diagnose_relaxation:  # a step some of a prompt's rows sit out correlates each row on its own
            per_prompt = self.rows_per_prompt if whole_prompts else 1
            stats.update(relaxation_fidelity(torch.stack(rewards), torch.stack(hard_rewards), per_prompt))
        return phi.tensor().view(N, n, V), stats

    @torch.no_grad()
    def hard_score(self, committed: torch.Tensor, positions: torch.Tensor, hard_tokens: torch.Tensor,
                   keep: torch.Tensor, context: RewardContext, padded: bool) -> torch.Tensor:
        """Scores ``[N]`` of the sequences with the masked positions filled by the hard sample, as text
        would show them (under the same EOS cut as the relaxed score, so the two differ only by the
        relaxation of the embeddings)."""
        hard = self.table[hard_tokens.to(self.table.device)].to(committed.dtype)
        embeds = scatter_columns(committed, positions, hard, padded)
        return self.reward_model.score_embeddings(context, embeds, keep)


def relaxation_fidelity(relaxed: torch.Tensor, hard: torch.Tensor, rows_per_prompt: int) -> dict[str, torch.Tensor]:
    """Per-row trace statistics comparing the relaxed scores that drove the gradient with the hard
    sample's, ``[M, N]`` each (inner steps x rows): the hard score of the last inner step (beside
    ``guided_reward``), the mean gap relaxed - hard, and the correlation of the two over each prompt's
    rows and inner steps (the same value for the prompt's rows; NaN when either is constant)."""
    M, N = relaxed.shape
    x = relaxed.T.reshape(N // rows_per_prompt, rows_per_prompt * M).double()
    y = hard.T.reshape(N // rows_per_prompt, rows_per_prompt * M).double()
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    correlation = (x * y).sum(-1) / (x.square().sum(-1) * y.square().sum(-1)).sqrt()
    return {"hard_reward": hard[-1], "relaxation_gap": (relaxed - hard).mean(0),
            "relaxation_correlation": correlation.float().repeat_interleave(rows_per_prompt)}


class ChunkedLogits:
    """The logits ``phi [R, V]`` under optimization, in row chunks with a fused Adam each.

    Everything vocabulary-wide in a step (the softmaxes, the schedule's entropy, the hard sample,
    the relaxation's backward, Adam) runs one chunk at a time (``sampler.row_chunks``): the
    transients stay at chunk size, on a CPU in cache, and no ``[R, V]`` gradient is ever whole.
    Each is a per-row or per-element operation, so the numbers are those of one pass over
    ``[R, V]``; the relaxation's backward is written out as autograd computes it (softmax's own
    backward kernel, then the division by tau).
    """

    KEEP_PROBS_BYTES = 1 << 28  # keep softmax(phi / tau) for the backward below this size, else recompute it

    def __init__(self, logits: torch.Tensor, lr: float, temperature: float):
        self.temperature = temperature
        self.rows = row_chunks(logits.shape[0], logits.shape[1], logits.device)
        self.chunks = [logits[rows].to(torch.float32, copy=True) for rows in self.rows]
        # fused: one kernel per update; several times cheaper than the per-op default
        self.optimizers = [torch.optim.Adam([c], lr=lr, fused=c.device.type in ("cpu", "cuda")) for c in self.chunks]
        self.keep_probs = logits.numel() * 4 <= self.KEEP_PROBS_BYTES
        self.probs: list[torch.Tensor | None] = [None] * len(self.chunks)

    def soft_probs(self, i: int) -> torch.Tensor:
        """softmax(phi / tau) of chunk ``i``, in fp32 as the sampler's."""
        return self.probs[i] if self.probs[i] is not None else torch.softmax(self.chunks[i] / self.temperature, -1)

    def relax(self, table: torch.Tensor, schedule: Schedule, t: float, sampler: SamplerConfig, hard_draws):
        """The relaxed embeddings ``[R, H]``, the weights ``w [R]``, ``argmax phi [R]`` and the hard sample
        ``[R]`` (None when none was drawn).

        ``hard_draws(round)`` gives the hard sample's uniforms for all rows; None: w = 0 everywhere,
        no hard sample is drawn (its draws are keyed by counters, so no other draw shifts).
        """
        relaxed, weights, argmax, hards = [], [], [], []
        hard_draws = hard_draws and functools.cache(hard_draws)  # each round's draws once, for all chunks
        for i, (rows, phi) in enumerate(zip(self.rows, self.chunks)):
            probs = self.soft_probs(i)  # once: soft embedding and hard sample
            weight = schedule(phi, t)
            hard = None
            if hard_draws is not None:
                hard = sample_nucleus(phi, sampler, lambda r, rows=rows: hard_draws(r)[rows],
                                      probs=probs if sampler.top_k is None else None)
            relaxed.append(relax(probs, table, weight, hard))
            hards.append(hard)
            weights.append(weight)
            argmax.append(phi.argmax(-1))
            self.probs[i] = probs if self.keep_probs else None
        hard = torch.cat(hards) if hard_draws is not None else None
        return torch.cat(relaxed), torch.cat(weights), torch.cat(argmax), hard

    @torch.no_grad()
    def step(self, grad_relaxed: torch.Tensor, table: torch.Tensor) -> None:
        """One Adam step from the gradient at the relaxed embeddings ``[R, H]`` (it is the soft part's)."""
        for i, (rows, phi, optimizer) in enumerate(zip(self.rows, self.chunks, self.optimizers)):
            probs = self.soft_probs(i)
            grad_probs = (grad_relaxed[rows].to(table.dtype) @ table.T).to(phi.device, torch.float32)
            grad_logits = torch._softmax_backward_data(grad_probs, probs, -1, torch.float32)
            phi.grad = grad_logits / self.temperature
            optimizer.step()
            phi.grad = None
            self.probs[i] = None

    def tensor(self) -> torch.Tensor:
        """phi ``[R, V]`` in one piece; the optimizer state goes."""
        self.optimizers = []
        return torch.cat(self.chunks)
