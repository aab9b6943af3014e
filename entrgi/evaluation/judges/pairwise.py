"""A pairwise model judge, AlpacaEval-style: a chat model reads the instruction and two answers and names
the better one. Each pair is asked twice with the order swapped, so that a judge that favours a position
cancels out: the answer wins if it is preferred in both orders, loses if in neither, ties otherwise.
"""

from __future__ import annotations

import re

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.generation import ChatGenerator, make_generator
from entrgi.evaluation.judges import register
from entrgi.evaluation.judges.base import ModelJudge, Verdict

SYSTEM_PROMPT = ("You are a careful and impartial judge of answers written by AI assistants. You compare two answers "
                 "to the same instruction and name the one a thoughtful person would prefer.")
TEMPLATE = """Which answer follows the instruction better? Consider helpfulness, correctness, relevance, depth and \
clarity; do not let the order or the length of the answers sway you.

## Instruction

{instruction}

## Answer A

{answer_a}

## Answer B

{answer_b}

## Verdict

Reply with the letter of the better answer alone: A or B."""
# the reply's first word, past quotes, markdown and an "Answer" label
VERDICT = re.compile(r"^[\s\"'*#(\[]*(?i:answer\s*:?\s*)?([AB])(?![A-Za-z])")


def parse_verdict(text: str) -> str:
    """"A" or "B", read from the start of the reply; ValueError if it names neither."""
    found = VERDICT.match(text)
    if not found:
        raise ValueError(f"the judge's reply {text[:80]!r} names neither A nor B")
    return found.group(1)


@register("pairwise")
class PairwiseModelJudge(ModelJudge):
    pairwise = True

    def __init__(self, generator: ChatGenerator, name: str = "pairwise", system_prompt: str | None = SYSTEM_PROMPT,
                 template: str = TEMPLATE):
        super().__init__(generator, name, system_prompt)
        self.template = template

    @classmethod
    def from_config(cls, cfg, device: str, dtype: str) -> PairwiseModelJudge:
        return cls(make_generator(cfg, device, dtype), cfg.get("name", "pairwise"))

    def conversations(self, prompts: list[Prompt], answers: list[str], baseline_answers: list[str]) -> list[list[dict]]:
        """Two conversations per prompt: the answer as A, then the baseline's answer as A."""
        return self.conversations_of(self.template.format(instruction=p.text, answer_a=a, answer_b=b)
                                     for p, mine, theirs in zip(prompts, answers, baseline_answers)
                                     for a, b in ((mine, theirs), (theirs, mine)))

    def compare(self, prompts: list[Prompt], answers: list[str], baseline_answers: list[str]) -> list[Verdict]:
        replies = self.reply(self.conversations(prompts, answers, baseline_answers))
        verdicts = []
        for answer_first, baseline_first in zip(replies[0::2], replies[1::2]):
            details = {"replies": [answer_first.text, baseline_first.text]}  # answer as A, then as B
            try:
                picks = [parse_verdict(answer_first.text), parse_verdict(baseline_first.text)]
            except ValueError as error:
                verdicts.append(Verdict(None, details, str(error)))
                continue
            wins = (picks[0] == "A") + (picks[1] == "B")
            verdicts.append(Verdict(wins / 2, {**details, "preferred": picks}))
        return verdicts
