"""Feynman-Kac steering (Singhal et al. 2025): gradient-free particle resampling by reward potentials.

A prompt's N particles are its ``num_samples`` rows, sampled unguided. At every ``resample_every``-th
denoising step (the steps with ``(index + 1) % resample_every == 0``), before the step's tokens are
drawn, each particle's current denoised estimate (its masked positions filled with the argmax of the
step's logits, or a draw from them) is decoded and scored as text by the reward model; with r_s the
reward at a particle's s-th resampling (s = 1, 2, ...; the rewards of its ancestors before it was
copied), its potential is

    diff:  G_s = exp(lambda (r_s - r_{s-1})),   r_0 = 0
    max:   G_s = exp(lambda max_{u <= s} r_u)
    sum:   G_s = exp(lambda sum_{u <= s} r_u)

and the prompt's particles are resampled in proportion to G_s (multinomial or systematic). These
are the paper's potentials, each G_s used alone since resampling resets the weights (its code:
``fkd_class.py`` of Fk-Diffusion-Steering; the running max and sum follow each particle's lineage;
its max starts from a floor of 0, here from the first reward, as the paper writes it). The paper also reweights max and sum at the last step by
exp(lambda r_T) / prod_s G_s, so that a final resampling targets p(x) exp(lambda r(x)); there is no
final resampling here, since the answer is the best final particle by the reward model and a
resampling after the last step could only drop it.

A prompt whose potentials are all equal (lambda = 0; one particle; identical estimates) keeps its
particles as they are: resampling under equal weights only discards some at random. So with a
constant potential the particles are exactly ``bon``'s samples. Every draw comes from the rows'
counter-based streams (``entrgi.sampling.rng``); a copy of a particle that already has one copy in
the prompt gets a fresh key derived from (ancestor key, slot, step), so copies diverge while each
row's randomness stays its particle's: results do not depend on the batch.
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
from entrgi.sampling.rng import RowRandom, derive_keys
from entrgi.sampling.sampler import (
    SamplerConfig,
    StepState,
    StepUpdate,
    sample_from_probs,
    sample_nucleus,
    scatter_columns,
)

POTENTIALS = ("diff", "max", "sum")
RESAMPLING = ("multinomial", "systematic")
ESTIMATES = ("argmax", "sample")
# sub-streams of RowRandom.PARTICLES at a step
ESTIMATE_DRAW, ANCESTOR_DRAW, FRESH_KEY = 0, 1, 2


def log_potential(kind: str, rewards: torch.Tensor) -> torch.Tensor:
    """log G_s / lambda of each particle from ``rewards [..., s]``, its lineage's rewards r_1 ... r_s."""
    if kind == "diff":
        previous = rewards[..., -2] if rewards.shape[-1] > 1 else torch.zeros_like(rewards[..., -1])
        return rewards[..., -1] - previous
    if kind == "max":
        return rewards.max(-1).values
    if kind == "sum":
        return rewards.sum(-1)
    raise ConfigError(f"method.potential={kind!r}; use one of {list(POTENTIALS)}")


def resample(log_weights: torch.Tensor, uniforms: torch.Tensor, scheme: str) -> torch.Tensor:
    """Ancestors ``[P, N]`` (indices into each row's N particles) drawn in proportion to ``exp(log_weights)``.

    ``uniforms [P, N]`` in (0, 1): multinomial draws slot j's ancestor from ``uniforms[:, j]``;
    systematic places N evenly spaced points offset by ``uniforms[:, 0]`` (each particle is then
    kept floor(N w) or ceil(N w) times). Rows whose weights are all equal keep every particle.
    """
    P, N = log_weights.shape
    weights = torch.softmax(log_weights.double(), dim=-1)
    if scheme == "multinomial":
        points = uniforms.double()
    elif scheme == "systematic":
        points = (uniforms[:, :1].double() + torch.arange(N, device=uniforms.device)) / N
    else:
        raise ConfigError(f"method.resampling={scheme!r}; use one of {list(RESAMPLING)}")
    drawn = sample_from_probs(weights.unsqueeze(1).expand(P, N, N), points)
    equal = (log_weights == log_weights[:, :1]).all(-1, keepdim=True)
    return torch.where(equal, torch.arange(N, device=drawn.device), drawn)


def effective_particles(log_weights: torch.Tensor) -> torch.Tensor:
    """The effective sample size ``1 / sum w^2`` of each row's normalized weights ``[P, N] -> [P]``."""
    return 1.0 / torch.softmax(log_weights.double(), dim=-1).pow(2).sum(-1)


def particle_keys(keys: torch.Tensor, order: torch.Tensor, num_particles: int, step: int) -> torch.Tensor:
    """Random keys of the resampled rows ``order [P*N]``: the first copy of a particle keeps its key,
    every later copy in the same prompt gets one derived from (ancestor key, slot, step)."""
    ancestors = order.view(-1, num_particles)
    same = ancestors[:, :, None] == ancestors[:, None, :]
    earlier = torch.ones(num_particles, num_particles, dtype=torch.bool, device=order.device).tril(-1)
    later_copy = (same & earlier).any(-1).flatten()
    inherited = keys[order]
    slot = torch.arange(num_particles, device=order.device).repeat(ancestors.shape[0])
    fresh = derive_keys(inherited, step, RowRandom.PARTICLES, FRESH_KEY, slot)
    return torch.where(later_copy, fresh, inherited)


@dataclass
class ParticleResampling:
    """A step hook that resamples each prompt's particles (rows i*N ... i*N+N-1) by their potentials."""

    dllm: DiffusionLM
    reward_model: RewardModel
    prompts: list[str]  # each row's prompt text
    num_particles: int  # N
    sampler: SamplerConfig  # tau, top-p, top-k of a sampled estimate
    potential: str = "diff"
    lam: float = 1.0
    resample_every: int = 4
    resampling: str = "systematic"
    estimate: str = "argmax"
    # [rows, resamplings so far]: each row's lineage's estimate rewards, per group of rows (``StepState.rows``
    # of a block-causal model's groups, see ``sampler.generate``; None: the whole batch)
    rewards: dict[tuple[int, ...] | None, torch.Tensor] = field(default_factory=dict)

    def __call__(self, state: StepState) -> StepUpdate | None:
        step = state.step.index
        # a prompt's particles resample together: not at a step some rows sit out (threshold decoding)
        if (step + 1) % self.resample_every or not state.whole_group:
            return None
        if self.estimate == "argmax":
            fill = state.logits.argmax(-1)
        else:
            n = state.positions.shape[1]
            fill = sample_nucleus(state.logits, self.sampler,
                                  lambda r: state.rng.uniform((n,), step, RowRandom.PARTICLES, ESTIMATE_DRAW, r))
        denoised = scatter_columns(state.tokens, state.positions, fill)
        group = None if state.rows is None else tuple(state.rows.tolist())
        prompts = self.prompts if group is None else [self.prompts[row] for row in group]
        scores = self.reward_model.score_texts(prompts, self.dllm.decode(denoised))
        reward = torch.tensor(scores, device=state.tokens.device)
        before = self.rewards.get(group)
        lineage = reward[:, None] if before is None else torch.cat([before, reward[:, None]], dim=1)
        N = self.num_particles
        log_weights = (self.lam * log_potential(self.potential, lineage)).view(-1, N)
        uniforms = state.rng.uniform((1,), step, RowRandom.PARTICLES, ANCESTOR_DRAW).view(-1, N)
        ancestors = resample(log_weights, uniforms, self.resampling)
        order = (ancestors + N * torch.arange(ancestors.shape[0], device=ancestors.device)[:, None]).flatten()
        self.rewards[group] = lineage[order]
        stats = {"estimate_reward": reward[order],
                 "effective_particles": effective_particles(log_weights).float().repeat_interleave(N)}
        return StepUpdate(order=order, row_keys=particle_keys(state.rng.keys, order, N, step), stats=stats)


@register("fk")
@dataclass
class ParticleSteering(Method):
    """FK steering; N particles per prompt = the job's ``num_samples``; the answer is the best final one."""

    name: str = "fk"
    potential: str = "diff"  # diff | max | sum (see the module docstring)
    lam: float = 1.0  # lambda, the potentials' inverse temperature; 0: no steering (bon's samples)
    resample_every: int = 4  # resample after every k-th denoising step
    resampling: str = "systematic"  # systematic | multinomial
    estimate: str = "argmax"  # masked positions of the scored estimate: argmax | sample of the step's logits

    def __post_init__(self):
        if self.potential not in POTENTIALS:
            raise ConfigError(f"method.potential={self.potential!r}; use one of {list(POTENTIALS)}")
        if isinstance(self.lam, bool) or not (isinstance(self.lam, (int, float)) and self.lam >= 0):
            raise ConfigError(f"method.lam={self.lam} must be a number >= 0 (0: no steering; the paper's text runs: 10)")
        if isinstance(self.resample_every, bool) or not (isinstance(self.resample_every, int)
                                                         and self.resample_every >= 1):
            raise ConfigError(f"method.resample_every={self.resample_every} must be an integer >= 1 (1: every step)")
        if self.resampling not in RESAMPLING:
            raise ConfigError(f"method.resampling={self.resampling!r}; use one of {list(RESAMPLING)}")
        if self.estimate not in ESTIMATES:
            raise ConfigError(f"method.estimate={self.estimate!r}; use one of {list(ESTIMATES)}")

    def prepare(self, setup: SamplingSetup, prompts: list[Prompt]) -> dict:
        if isinstance(setup.num_samples, bool) or not (isinstance(setup.num_samples, int) and setup.num_samples >= 1):
            raise ConfigError(f"num_samples={setup.num_samples!r} is method=fk's particle count N; "
                              f"it must be an integer >= 1")
        return {"particles": setup.num_samples}

    def hook(self, setup: SamplingSetup, batch: list[Prompt], rows: list[str]) -> ParticleResampling:
        self.prepare(setup, batch)
        return ParticleResampling(setup.dllm, setup.reward_model, rows, setup.num_samples, setup.sampler,
                                  self.potential, self.lam, self.resample_every, self.resampling, self.estimate)
