"""The one-step log-likelihood estimator of d1 / diffu-GRPO for a masked diffusion LM.

A completion's log-likelihood under a masked diffusion LM has no closed form. d1 (Zhao et al.,
2025) estimates it with one forward pass: every completion token is masked, each prompt token is
masked with probability ``prompt_mask_rate`` (0.3), and the log-probability the model gives each
completion token at its masked position is read off. A completion's score is the mean over its
real tokens (up to and including its first EOS; the padding after it is excluded), and a batch's
the mean over completions. RGRL maximizes it on guided samples; diffu-GRPO puts its per-token
values in the clipped GRPO ratio.
"""

from __future__ import annotations

import torch

ESTIMATORS = ("one_step", "elbo")  # the likelihood the SFT recipes maximize (d1's one-step estimate by default)
# where the EntRGi authors' RGRL and diffu-GRPO compute their loss otherwise than we first did
# (docs/rgrl-protocol.md); each setting's first option is the authors', the second ours
PROTOCOLS = {
    # the likelihood forward attends a completion up to its first EOS (the prompt mask joined with the
    # completion mask), or every completion column, as sampling does
    "likelihood_attention": ("until_eos", "all"),
    # a completion ends at the tokenizer's EOS token, or at any of model.eos_tokens
    "completion_eos": ("tokenizer", "model"),
    # the SFT loss: minus the micro-batch's sequence scores summed over K, or their mean
    "loss_scale": ("per_prompt", "per_sequence"),
}


def mask_prompt(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, mask_id: int, rate: float,
                generator: torch.Generator) -> torch.Tensor:
    """Each real (non-padding) token of ``prompt_ids [N, P]`` replaced by ``mask_id`` with probability ``rate``.

    ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible and lets the policy, the
    frozen reference and the old policy of one batch see the same prompt mask.
    """
    draw = torch.rand(prompt_ids.shape, generator=generator).to(prompt_ids.device)
    return prompt_ids.masked_fill((draw < rate) & prompt_mask.bool(), mask_id)


def completion_mask(completion_ids: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 for each completion's real tokens: up to and including its first EOS; 0 for what follows."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    before = is_eos.long().cumsum(-1) - is_eos.long()  # EOS tokens strictly before each column
    return (before == 0).long()


def completion_log_probs(dllm, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_length: int,
                         network=None, entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probabilities ``[N, L]`` of the last ``completion_length`` columns of ``input_ids``.

    Those columns are all masked and scored in one forward of ``dllm`` (``DiffusionLM.forward``:
    bidirectional, Dream's logits shifted, LLaDA's not); the prompt columns go in as given (already
    masked by :func:`mask_prompt`). ``network``: the same model as wrapped for training (DDP, FSDP),
    whose own forward must run so that gradients synchronize. With ``entropy``, also the entropy of
    each position's predicted distribution (no gradient; for logging).
    """
    start = input_ids.shape[1] - completion_length
    targets = input_ids[:, start:]
    noised = torch.cat([input_ids[:, :start], torch.full_like(targets, dllm.mask_id)], dim=1)
    logits = dllm.forward(noised, attention_mask, start=start, network=network).float()
    log_probs = logits.log_softmax(-1)
    token_log_probs = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropies = None
    if entropy:
        with torch.no_grad():
            entropies = -(log_probs.exp() * log_probs).sum(-1)
    return token_log_probs, entropies


def sequence_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_token [N, L]`` over each row's real tokens ``mask [N, L]``: ``[N]``."""
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def one_step_log_likelihood(dllm, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                            generator: torch.Generator, prompt_mask_rate: float = 0.3, network=None) -> torch.Tensor:
    """The d1 estimate of the mean per-token log-likelihood of left-padded ``completion_ids [N, L]`` given
    left-padded ``prompt_ids [N, P]``: a scalar, averaged over each completion's real tokens, then over
    completions. RGRL's loss is minus this."""
    masked = mask_prompt(prompt_ids, prompt_mask, dllm.mask_id, prompt_mask_rate, generator)
    attention = torch.cat([prompt_mask, torch.ones_like(completion_ids)], dim=1)
    per_token, _ = completion_log_probs(dllm, torch.cat([masked, completion_ids], 1), attention,
                                        completion_ids.shape[1], network)
    return sequence_mean(per_token, completion_mask(completion_ids, dllm.eos_ids)).mean()


def elbo_terms(dllm, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_length: int,
               generator: torch.Generator, network=None, eps: float = 1e-3) -> torch.Tensor:
    """Per-token terms ``[N, L]`` of the masked-diffusion ELBO of the last ``completion_length`` columns.

    Each row draws ``t ~ U(eps, 1)`` and masks each completion token with probability ``t``; a masked
    token's term is its log-probability over ``t``, an unmasked one's 0 (the objective the tiny dLLM was
    pretrained with, ``entrgi.training.losses``). Their mean over a completion's real tokens bounds
    its per-token log-likelihood from below, at every masking rate rather than only the fully masked one.
    """
    from entrgi.training.losses import mask_responses, sample_masking_ratio

    start = input_ids.shape[1] - completion_length
    targets = input_ids[:, start:]
    t = sample_masking_ratio(len(targets), generator, eps).to(targets.device)
    noised, masked = mask_responses(targets, t, torch.rand(targets.shape, generator=generator).to(targets.device),
                                    dllm.mask_id)
    logits = dllm.forward(torch.cat([input_ids[:, :start], noised], dim=1), attention_mask, start=start,
                          network=network).float()
    token_log_probs = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return token_log_probs * masked / t[:, None]


def stratified_mask_counts(draws: int, completion_length: int, generator: torch.Generator) -> torch.Tensor:
    """How many of ``completion_length`` tokens each of ``draws`` rows masks: ``[draws]`` in 1..L.

    Each row's count is uniform on 1..L; one shared offset spreads the rows evenly over the counts
    (a multiple of L rows covers every count equally often), which lowers the variance of
    :func:`masked_count_estimates` against independent draws.
    """
    offset = int(torch.randint(completion_length, (1,), generator=generator))
    return (offset + torch.arange(draws) * completion_length // draws) % completion_length + 1


def masked_count_estimates(dllm, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_length: int,
                           counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Unbiased estimates ``[N]`` of the masked-diffusion bound on the log-likelihood of the last
    ``completion_length`` columns of ``input_ids [N, S]`` (a sum over the completion's tokens).

    Row n masks ``counts[n]`` of the completion's tokens, chosen uniformly; its estimate is the
    log-probability of the masked tokens times L / count. With the count uniform on 1..L this is the
    bound of :func:`elbo_terms` (whose masking rate t is continuous) summed over the completion,
    written as a sum over how many tokens are masked: the estimator LLaDA and Dream evaluate
    multiple-choice tasks with, and one of bounded variance (the weight is at most L).
    """
    start = input_ids.shape[1] - completion_length
    targets = input_ids[:, start:]
    ranks = torch.rand(targets.shape, generator=generator).argsort(-1).argsort(-1).to(targets.device)
    masked = ranks < counts.to(targets.device)[:, None]
    noised = targets.masked_fill(masked, dllm.mask_id)
    logits = dllm.logits(torch.cat([input_ids[:, :start], noised], dim=1), attention_mask, start=start).float()
    token_log_probs = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    weights = completion_length / counts.to(token_log_probs)
    return (token_log_probs * masked).sum(-1) * weights
