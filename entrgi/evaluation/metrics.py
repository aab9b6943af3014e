"""Summary statistics: means with standard errors, win-rates with bootstrap intervals, peak memory."""

from __future__ import annotations

import math
import resource
import sys

import torch


def mean_stderr(values: list[float]) -> dict[str, float]:
    """Mean, standard error of the mean and count."""
    n = len(values)
    if n == 0:
        return {"mean": float("nan"), "stderr": float("nan"), "n": 0}
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "stderr": math.sqrt(var / n), "n": n}


def outcomes(scores: list[float], baseline: list[float]) -> list[float]:
    """Per pair: 1 for a win over the baseline, 0.5 for a tie, 0 for a loss."""
    if len(scores) != len(baseline):
        raise ValueError(f"{len(scores)} scores against {len(baseline)} baseline scores; pair them by prompt")
    return [1.0 if s > b else 0.5 if s == b else 0.0 for s, b in zip(scores, baseline)]


def win_rate(outcome: list[float], resamples: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of per-prompt outcomes (ties count half) with a percentile bootstrap interval over prompts.

    The resampling is seeded, so the same outcomes always give the same interval.
    """
    n = len(outcome)
    if n == 0:
        return {"rate": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0,
                "wins": 0, "ties": 0, "losses": 0}
    values = torch.tensor(outcome, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    rates = []
    for start in range(0, resamples, 1000):  # chunks keep memory at 1000 x n
        rows = min(1000, resamples - start)
        rates.append(values[torch.randint(n, (rows, n), generator=generator)].mean(dim=1))
    rates = torch.cat(rates)
    tail = (1 - level) / 2
    low, high = torch.quantile(rates, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return {"rate": values.mean().item(), "low": low, "high": high, "n": n,
            "wins": int((values == 1).sum()), "ties": int((values == 0.5).sum()), "losses": int((values == 0).sum())}


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: allocated GPU memory on CUDA, else the resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # bytes on macOS, KiB on Linux
