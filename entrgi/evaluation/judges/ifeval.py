"""IFEval (Zhou et al., 2023): Google's verifiable-instruction checkers as a judge.

Each IFEval prompt carries its instruction ids and their arguments (``Prompt.metadata``, read by the loader
with ``benchmark.metadata_fields``). An answer follows an instruction *strictly* if the checker accepts it
as it is, *loosely* if it accepts one of the eight variants IFEval tries (first and/or last line dropped,
``*`` removed). Per answer: prompt-level accuracy (all instructions followed) and instruction-level
accuracy (the share followed), strict and loose.

The checkers are Google's, as the ``llm-eval-framework`` package ships them (the ``judges`` extra);
``tests/test_ifeval.py`` checks that they give lm-eval's verdicts. Two checkers need nltk's ``punkt_tab``
sentence model, which no package ships: where it is not installed, those instructions (and so their
prompts) are declined with the command that installs it, and nothing is downloaded at run time.
"""

from __future__ import annotations

import random

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import register
from entrgi.evaluation.judges.base import Verdict

METRICS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")
PUNKT_FIX = ("needs nltk's punkt_tab sentence model, which is not installed: python -m nltk.downloader punkt_tab "
             "(where there is network; or put it under $NLTK_DATA)")


def _checkers():
    try:
        from eval_framework.tasks import ifeval
    except ImportError:
        raise ConfigError("eval_reward=ifeval checks answers with llm-eval-framework's IFEval checkers, which are "
                          "not installed: pip install 'entrgi[judges]'") from None
    import langdetect

    langdetect.DetectorFactory.seed = 0  # the language checks are otherwise random from run to run
    return ifeval


def _seeded(check, *args):
    """``check(*args)`` with Python's random numbers seeded, and their state restored after: where an argument in
    the data is invalid, Google's checkers draw one at random (prompt 1122 counts the "letter" '#', which
    the letter-frequency checker replaces by a random letter), so unseeded the verdict changes run to run."""
    state = random.getstate()
    random.seed(0)
    try:
        return check(*args)
    finally:
        random.setstate(state)


@register("ifeval")
class IFEvalJudge:
    def __init__(self, name: str = "ifeval", score: str = "instruction_strict"):
        if score not in METRICS:
            raise ConfigError(f"unknown eval_reward.score={score!r}; use one of {', '.join(METRICS)}")
        self.name, self.metric, self.ifeval = name, score, _checkers()
        self.forwards = 0  # model-free

    @classmethod
    def from_config(cls, cfg, device: str, dtype: str) -> IFEvalJudge:
        return cls(cfg.get("name", "ifeval"), cfg.get("score", "instruction_strict"))

    def follows(self, prompt: Prompt, instruction: str, kwargs: dict, response: str) -> tuple[bool, bool]:
        """(strict, loose): whether ``response`` follows one instruction; ValueError if it cannot be checked."""
        if instruction not in self.ifeval.INSTRUCTION_DICT:
            raise ValueError(f"unknown IFEval instruction {instruction!r}")
        example = self.ifeval.InputExample(key=0, instruction_id_list=[instruction], prompt=prompt.text,
                                           kwargs=[kwargs])
        try:
            return tuple(_seeded(test, example, {prompt.text: response}).follow_instruction_list[0] for test in
                         (self.ifeval.test_instruction_following_strict, self.ifeval.test_instruction_following_loose))
        except LookupError:  # nltk's data
            raise ValueError(f"IFEval instruction {instruction} {PUNKT_FIX}") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"IFEval instruction {instruction} with {kwargs}: {type(error).__name__}: {error}") from None

    def verdict(self, prompt: Prompt, response: str) -> Verdict:
        metadata = prompt.metadata or {}
        instructions, kwargs = metadata.get("instruction_id_list"), metadata.get("kwargs")
        if not instructions or not isinstance(kwargs, list) or len(kwargs) != len(instructions):
            return Verdict(None, error="no IFEval instruction ids and kwargs on this prompt (benchmark=ifeval carries "
                                       "them: benchmark.metadata_fields=[instruction_id_list,kwargs])")
        try:
            followed = [self.follows(prompt, i, k or {}, response) for i, k in zip(instructions, kwargs)]
        except ValueError as error:
            return Verdict(None, {"instructions": instructions}, str(error))
        strict, loose = [s for s, _ in followed], [lo for _, lo in followed]
        n = len(instructions)
        counts = {"prompt_strict": [int(all(strict)), 1], "prompt_loose": [int(all(loose)), 1],
                  "instruction_strict": [sum(strict), n], "instruction_loose": [sum(loose), n]}
        hits, total = counts[self.metric]
        return Verdict(hits / total, {"instructions": instructions, "strict": strict, "loose": loose,
                                      "accuracy_counts": counts})

    def verdicts(self, prompts: list[Prompt], responses: list[str]) -> list[Verdict]:
        return [self.verdict(p, r) for p, r in zip(prompts, responses)]
