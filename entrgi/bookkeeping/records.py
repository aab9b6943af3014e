"""The record of one prompt's result, as ``results.jsonl`` stores it, and what a run records about itself.

Every reader (the runner, the report, the W&B logger, the scripts) goes through ``PromptResult``
instead of repeating string keys.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, fields


@dataclass
class PromptResult:
    id: str
    prompt: str
    reference: str | None
    responses: list[str]  # the K samples
    rewards: list[float]  # the guiding reward model's score of each, on the decoded text
    best_index: int
    top1_reward: float
    mean_reward: float
    trace: dict  # per denoising step: step, committed, and the hook's statistics (mean over samples)
    cost: dict  # per prompt: seconds, dllm_forwards, reward_forwards, reward_backwards
    baseline: dict | None = None  # best-of-K's answer on the same prompt: method, response, top1_reward
    judge: dict | None = None  # the held-out judge: name, top1, baseline_top1
    outcome: dict | None = None  # against best-of-K, by judge kind ("guide", "judge"): 1, 0.5 or 0
    answer_index: int | None = None  # the sample compared with best-of-K (None: not compared)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None or k == "reference"}

    @classmethod
    def from_json(cls, data: dict) -> "PromptResult":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def environment() -> dict:
    """Versions, host and device of this process: what a summary records about where it ran."""
    import torch
    import transformers

    import entrgi

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"entrgi": entrgi.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "host": platform.node(), "device": device,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def flatten(tree: dict, separator: str = ".", prefix: str = "") -> dict:
    """The leaves of a nested dict under joined keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, separator, f"{prefix}{key}{separator}"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
