"""A sequence-classification reward model as a held-out judge (``type: reward_model``)."""

from __future__ import annotations

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import register
from entrgi.evaluation.judges.base import ScoringJudge
from entrgi.models.reward import RewardModel


@register("reward_model")
class RewardModelJudge(ScoringJudge):
    """A sequence-classification reward model scoring decoded text through its chat template."""

    def __init__(self, name: str, reward_model: RewardModel, batch_size: int = 16):
        self.name, self.reward_model, self.batch_size = name, reward_model, batch_size

    @classmethod
    def from_config(cls, cfg, device: str, dtype: str) -> RewardModelJudge:
        model = RewardModel.load(cfg.path, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code,
                                 chat_template=cfg.get("chat_template"))
        return cls(cfg.name, model)

    @property
    def forwards(self) -> int:
        return self.reward_model.evaluations["forward"]

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return self.reward_model.score_texts([p.text for p in prompts], responses, self.batch_size)
