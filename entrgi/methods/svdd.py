"""SVDD, soft value-based decoding (Li et al. 2024, arXiv 2408.08252): derivative-free, one step at a time.

At every ``every``-th denoising step each row draws ``num_candidates`` (M) candidate next states from
the model under the sampler's own draw-and-commit rule (``StepState.propose``: candidate 0 is the
sampler's own draw, candidates 1 ... M-1 independent draws of the same row), values each by the
reward of its one-step completion, the paper's posterior-mean estimate: the dLLM runs on the
candidate and its remaining masks are filled with its prediction (argmax), and keeps one candidate
per row, drawn from ``softmax(value / alpha)`` with the row's own random stream (``alpha = 0``: the
best, the first of equal bests). Once nothing stays masked the candidate is its own completion and
is scored as it is.

Rows never mix: each keeps one of its own candidates, so a row's samples do not depend on its
batch, and with one candidate (or on the steps it skips) the step is exactly the unguided one.
Costs per guided step and row, beside the sampler's own forward: M dLLM forwards for the
completions (none at a step that leaves nothing masked; their columns in the records'
``lookahead_*`` counts, which the cost model adds to the sampler's) and M reward evaluations (counted
in ``dllm_forwards`` and ``reward_forwards``); with M = 1 nothing is valued. Under the threshold rule
only the rows still working on their block take part in a step (``StepState.rows``). The completion
fills every remaining mask, later blocks included: the value of a whole response.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods import register
from entrgi.methods.base import Method, SamplingSetup
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.reward import RewardModel
from entrgi.models.scorer import Scorer
from entrgi.sampling.guidance import guided_steps
from entrgi.sampling.rng import RowRandom
from entrgi.sampling.sampler import StepState, StepUpdate, sample_from_probs, scatter_columns

TIE = 1e-5  # values this close to the best, relative to its size, count as best (alpha = 0)
# the choice's draw: (step, PROPOSALS, 0), a counter no proposal uses (theirs are draw >= 1, then stream)
CHOICE = 0


def choose(values: torch.Tensor, alpha: float, uniforms: torch.Tensor) -> torch.Tensor:
    """Each row's candidate ``[N]`` from ``values [N, M]``: a draw from ``softmax(values / alpha)`` with
    ``uniforms [N]`` in (0, 1), or when ``alpha`` is 0 the first best, values within ``TIE`` (relative) of
    the best counting as best: equal completions keep the earliest candidate whatever the reward
    model's rounding noise, which differs from batch to batch."""
    if alpha == 0:
        best = values.max(-1, keepdim=True).values
        return (values >= best - TIE * (1 + best.abs())).int().argmax(-1)  # the first of the maxima
    return sample_from_probs(torch.softmax(values.double() / alpha, dim=-1), uniforms.double())


@dataclass
class SoftValueDecoding:
    """A step hook that commits, per row, one of M proposed next states chosen by its completion's reward."""

    dllm: DiffusionLM
    reward_model: RewardModel | Scorer
    prompts: list[str]  # each row's prompt text
    prompt: torch.Tensor  # [N, P] the rows' prompts, left-padded as the sampler pads them
    prompt_mask: torch.Tensor  # [N, P]
    num_candidates: int
    alpha: float
    steps: set[int] | None  # the step indices to steer (``guided_steps``); None: all
    text_width: int = 0  # the job's width of reward text scoring (batch-independent scores)
    dllm_forwards: int = 0  # sequences this hook ran through the dLLM (the completions)
    # [N] per batch row: the dLLM work of its completions (columns, output-layer columns, attention keys)
    row_costs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        self.row_costs = {name: torch.zeros(len(self.prompts), dtype=torch.long, device=self.prompt.device)
                          for name in ("lookahead_columns", "lookahead_head_columns", "lookahead_attention_keys")}

    def __call__(self, state: StepState) -> StepUpdate | None:
        step = state.step
        if self.num_candidates == 1 or (self.steps is not None and step.index not in self.steps):
            return None
        M, (N, L) = self.num_candidates, state.tokens.shape
        # the block modes' threshold rule: the step's rows only (``state.rows``), padded positions (L)
        rows = torch.arange(N, device=state.tokens.device) if state.rows is None else state.rows
        candidates = torch.stack([state.propose(draw=c) for c in range(M)], dim=1)  # [N, M, L]
        completions = self.complete(candidates.view(N * M, L), state.positions.repeat_interleave(M, 0),
                                    rows.repeat_interleave(M), still_masked=step.num_masked > step.count)
        texts = self.dllm.decode(completions)
        prompts = [self.prompts[row] for row in rows.tolist() for _ in range(M)]
        values = torch.tensor(self.reward_model.score_texts(prompts, texts, width=self.text_width),
                              device=candidates.device).view(N, M)
        uniforms = state.rng.uniform((1,), step.index, RowRandom.PROPOSALS, CHOICE).squeeze(1)
        chosen = choose(values, self.alpha, uniforms)
        each = torch.arange(N, device=chosen.device)
        return StepUpdate(next_tokens=candidates[each, chosen],
                          stats={"lookahead_reward": values[each, chosen].float(),
                                 "lookahead_spread": (values.max(-1).values - values.min(-1).values).float()})

    @torch.no_grad()
    def complete(self, candidates: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor,
                 still_masked: bool) -> torch.Tensor:
        """Each candidate with its remaining masks filled by the dLLM's prediction on it (one full forward
        per candidate); ``positions`` holds the step's masked columns, a superset of the candidate's
        (padding: ``L``), ``rows`` the batch row each candidate belongs to. The forwards' work is added
        to ``row_costs`` per batch row (the cost model counts it beside the sampler's own)."""
        if not still_masked:
            return candidates
        L = candidates.shape[1]
        prompt, prompt_mask = self.prompt[rows], self.prompt_mask[rows]
        x = torch.cat([prompt, candidates], dim=1)
        attention = torch.cat([prompt_mask, torch.ones_like(candidates, dtype=prompt_mask.dtype)], dim=1)
        logits = self.dllm.logits(x, attention, start=prompt.shape[1], columns=positions.clamp(max=L - 1))
        logits[..., self.dllm.mask_id] = float("-inf")
        self.dllm_forwards += candidates.shape[0]
        width = x.shape[1]
        work = {"lookahead_columns": width, "lookahead_attention_keys": width * width}
        for name, amount in work.items():
            self.row_costs[name].index_add_(0, rows, torch.full_like(rows, amount))
        self.row_costs["lookahead_head_columns"].index_add_(0, rows, (positions < L).sum(-1))
        fill = scatter_columns(candidates, positions, logits.argmax(-1))
        return torch.where(candidates == self.dllm.mask_id, fill, candidates)


@register("svdd")
@dataclass
class SoftValueGuidance(Method):
    """SVDD on each of the job's K samples independently; the answer is the best of them by the reward."""

    name: str = "svdd"
    num_candidates: int = 4  # M: next states proposed per row and step (1: unguided sampling)
    alpha: float = 0.0  # the temperature of the choice over values; 0: the best candidate (the alpha -> 0 limit)
    every: int = 1  # steer every k-th denoising step only (1: all)

    def __post_init__(self):
        if isinstance(self.num_candidates, bool) or not (isinstance(self.num_candidates, int)
                                                         and self.num_candidates >= 1):
            raise ConfigError(f"method.num_candidates={self.num_candidates!r} must be an integer >= 1 "
                              f"(1: unguided sampling)")
        if isinstance(self.alpha, bool) or not (isinstance(self.alpha, (int, float)) and self.alpha >= 0):
            raise ConfigError(f"method.alpha={self.alpha!r} must be a number >= 0 (0: keep the best candidate)")
        if isinstance(self.every, bool) or not (isinstance(self.every, int) and self.every >= 1):
            raise ConfigError(f"method.every={self.every!r} must be an integer >= 1 (1: every step)")

    def hook(self, setup: SamplingSetup, batch: list[Prompt], rows: list[str]) -> SoftValueDecoding:
        K = setup.num_samples
        prompt_ids = [ids for ids in setup.dllm.encode_prompts([p.text for p in batch]) for _ in range(K)]
        prompt, prompt_mask = setup.dllm.pad_prompts(prompt_ids, setup.prompt_width)
        return SoftValueDecoding(setup.dllm, setup.reward_model, rows, prompt, prompt_mask, self.num_candidates,
                                 self.alpha, guided_steps(setup.sampler.steps, self.every), setup.text_width)
