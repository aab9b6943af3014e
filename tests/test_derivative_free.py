"""Derivative-free steering: SVDD, reward-weighted sampling, and scorers (rules, regexes, functions) as the reward."""

import json
import os
import textwrap

import pytest
import torch
from conftest import compose_config, entrgi_cli, sampled_together_and_apart

from entrgi.bookkeeping.settings import baseline_settings
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.from_config import build_method
from entrgi.methods import make_method
from entrgi.methods.unguided import best_of_k
from entrgi.methods.base import SamplingSetup
from entrgi.methods.rws import logit_scales
from entrgi.methods.svdd import choose
from entrgi.models.scorer import Scorer, make_scorer
from entrgi.sampling.sampler import SamplerConfig, generate

SMALL = SamplerConfig(gen_length=8, steps=4)
PROMPTS = [Prompt(str(i), f"Using the words file and {w}, say what `math.{f}` does.")
           for i, (w, f) in enumerate([("value", "sqrt"), ("return", "gcd")])]


def svdd(**settings):
    return make_method({"name": "svdd", "family": "svdd", **settings})


def rws(**settings):
    return make_method({"name": "rws", "family": "rws", **settings})


def constant_scorer():
    return Scorer("constant", lambda prompts, responses: [1.5] * len(responses), {"type": "test"})


def letters(prompts, responses):
    """A reward that separates almost every pair of texts: the letters' code points, summed and scaled."""
    return [sum(map(ord, r)) / 1000 for r in responses]


def setup_of(tiny_stack, reward=None, num_samples=3, sampler=SMALL):
    dllm, reward_model = tiny_stack
    return SamplingSetup.for_prompts(dllm, reward or reward_model, PROMPTS, sampler, num_samples=num_samples, seed=1)


def responses(method, setup):
    return [r.responses for r in method.sample(setup, PROMPTS)]


def test_svdd_with_one_candidate_is_unguided_sampling_bit_for_bit(tiny_stack):
    setup = setup_of(tiny_stack)
    unguided = [r.responses for r in best_of_k().sample(setup, PROMPTS)]
    assert responses(svdd(num_candidates=1), setup) == unguided
    # several candidates whose values all tie keep the first, the sampler's own draw: the whole
    # proposal, completion and commit path reproduces the unguided step exactly
    assert responses(svdd(num_candidates=3, alpha=0.0), setup_of(tiny_stack, constant_scorer())) == unguided
    assert responses(svdd(num_candidates=3), setup) != unguided  # and the tiny reward model steers it


def test_alpha_zero_keeps_the_best_candidate_and_a_small_alpha_tends_to_it():
    values = torch.tensor([[0.1, 0.9, 0.5], [2.0, -1.0, 2.0], [-3.0, -2.0, -2.5]])
    uniforms = torch.tensor([0.99, 0.01, 0.5])
    assert choose(values, 0.0, uniforms).tolist() == [1, 0, 1]  # ties: the first best
    assert choose(values[[0, 2]], 1e-6, uniforms[[0, 2]]).tolist() == [1, 1]
    # values equal but for a reward model's rounding noise count as ties: the earliest candidate stays
    assert choose(torch.tensor([[-2.0, -2.0 + 1e-7, -3.0]]), 0.0, uniforms[:1]).tolist() == [0]
    # a large alpha draws by the row's uniform, near uniformly over the candidates
    draws = choose(values[:1].expand(3000, 3), 1e6, torch.rand(3000))
    assert torch.bincount(draws, minlength=3).min() > 800


def test_svdd_commits_the_candidate_whose_completion_scores_best(tiny_stack):
    dllm, _ = tiny_stack
    scorer = Scorer("letters", letters, {"type": "test"})
    setup = setup_of(tiny_stack, scorer)
    hook = svdd(num_candidates=4, alpha=0.0).hook(setup, PROMPTS, [p.text for p in PROMPTS for _ in range(3)])
    checked = []

    def recording(state):  # at the first step every candidate still leaves masks to complete
        update = hook(state)
        if not checked:
            candidates = [state.propose(draw=c) for c in range(4)]
            every_row = torch.arange(6)
            completions = [hook.complete(c, state.positions, every_row, still_masked=True) for c in candidates]
            values = torch.tensor([scorer.score_texts(hook.prompts, dllm.decode(c)) for c in completions])  # [M, N]
            best = values.argmax(0)
            assert (values.max(0).values > values.min(0).values).any()  # the candidates differ: the choice matters
            for row in range(6):
                assert torch.equal(update.next_tokens[row], candidates[best[row]][row])
            checked.append(True)
        return update

    prompt_ids = [ids for ids in dllm.encode_prompts([p.text for p in PROMPTS]) for _ in range(3)]
    generate(dllm, prompt_ids, list(range(6)), SMALL, recording, setup.prompt_width)
    assert checked


def test_svdd_counts_its_completions_and_reward_evaluations(tiny_stack):
    setup = setup_of(tiny_stack, num_samples=2)
    records = svdd(num_candidates=3).sample(setup, PROMPTS)
    K, M, T = 2, 3, 4  # every step of SMALL commits; the last leaves nothing to complete
    assert records[0].cost["dllm_forwards"] == K * T + K * M * (T - 1)
    assert records[0].cost["reward_forwards"] == K * M * T + K  # candidates' values, then the final scores
    assert records[0].trace["lookahead_reward"][0] is not None


def test_svdd_and_rws_samples_do_not_depend_on_the_batch(tiny_stack):
    setup = setup_of(tiny_stack)
    for method in (svdd(num_candidates=2, alpha=0.5), rws(gamma=2.0)):
        sampled_together_and_apart(method, setup, PROMPTS)


def test_rws_with_a_constant_reward_is_unguided_sampling(tiny_stack):
    unguided = [r.responses for r in best_of_k().sample(setup_of(tiny_stack), PROMPTS)]
    assert responses(rws(gamma=3.0), setup_of(tiny_stack, constant_scorer())) == unguided
    assert responses(rws(gamma=0.0), setup_of(tiny_stack)) == unguided
    assert responses(rws(gamma=3.0), setup_of(tiny_stack)) != unguided  # a reward that varies steers it


def test_rws_scales_are_standardized_within_each_prompt():
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 4.0])  # prompt 0 ties; prompt 1 spreads
    scales = logit_scales(rewards, torch.arange(len(rewards)) // 3, gamma=0.5)
    assert scales[:3].tolist() == [1.0, 1.0, 1.0]
    z = (torch.tensor([0.0, 2.0, 4.0]) - 2.0) / torch.tensor([0.0, 2.0, 4.0]).std(unbiased=False)
    torch.testing.assert_close(scales[3:].double(), torch.exp(0.5 * z).double())
    prompt_of_row = torch.arange(len(rewards)) // 3
    torch.testing.assert_close(logit_scales(rewards * 100 - 7, prompt_of_row, 0.5), scales)  # the reward's scale drops out


def test_scorers_score_text_with_the_prompt_they_belong_to():
    keywords = make_scorer({"type": "keywords", "name": "keywords"})
    keywords.know(PROMPTS)
    assert keywords.score_texts([PROMPTS[0].text] * 2, ["the file value", "a file"]) == [1.0, 0.5]
    regex = make_scorer({"type": "regex", "name": "regex", "pattern": r"\bgcd\b"})
    assert regex.score_texts(["p", "p"], ["math.gcd(a, b)", "gcdx"]) == [1.0, 0.0]
    assert regex.evaluations["forward"] == 2


@pytest.mark.parametrize("cfg, message", [
    ({"type": "regex", "pattern": "("}, "is not a regular expression"),
    ({"type": "regex"}, "needs reward.pattern"),
    ({"type": "function", "path": "no_such_module_x:score"}, "cannot import 'no_such_module_x'"),
    ({"type": "function", "path": "json"}, "must name a function as package.module:function"),
    ({"type": "function", "path": "json:no_such_function"}, "has no function 'no_such_function'"),
    ({"type": "judge"}, "unknown reward.type='judge'"),
])
def test_a_bad_scorer_is_refused_naming_the_fix(cfg, message):
    with pytest.raises(ConfigError, match=message):
        make_scorer(cfg)


def test_gradient_methods_refuse_a_scorer_before_models_load_naming_the_methods_that_can():
    with pytest.raises(ConfigError) as error:
        build_method(compose_config("method=entrgi", "reward=keywords"))
    assert "\n" not in str(error.value)
    for can in ("method=bon", "fk", "svdd", "rws"):
        assert can in str(error.value)
    for method in ("bon", "fk", "svdd", "rws"):
        build_method(compose_config(f"method={method}", "reward=keywords"))


def test_the_shared_best_of_k_cache_keys_on_the_scorer_and_its_code(tmp_path, monkeypatch):
    cfg = compose_config("reward=keywords")
    assert baseline_settings(cfg, "cpu", "float32") != baseline_settings(compose_config(), "cpu", "float32")
    (tmp_path / "scoring.py").write_text("def score(prompt, response):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = make_scorer({"type": "function", "path": "scoring:score"}).identity
    (tmp_path / "scoring.py").write_text("def score(prompt, response):\n    return 2.0\n")
    import importlib
    import sys

    sys.modules.pop("scoring", None)
    importlib.invalidate_caches()
    second = make_scorer({"type": "function", "path": "scoring:score"}).identity
    function = compose_config("reward=function", "reward.path=scoring:score")
    assert baseline_settings(function, "cpu", "float32", first) != baseline_settings(function, "cpu", "float32", second)


def test_a_scoring_function_guides_svdd_end_to_end_from_the_cli(tmp_path):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        def score(prompt, response):
            # the share of the prompt's own words the response repeats
            asked = set(prompt.text.lower().split())
            said = response.lower().split()
            return sum(w in asked for w in said) / max(len(said), 1)
    """))
    done = entrgi_cli("method=svdd", "reward=function", "reward.path=my_rewards:score", "method.num_candidates=2",
                      "benchmark.num_prompts=2", "sampler.gen_length=8", "sampler.steps=4", "eval_reward=keywords",
                      "logger=none", "hydra.run.dir=job", cwd=tmp_path,
                      env={"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["method"] == "svdd" and summary["num_prompts"] == 2
    assert "guide" in summary["win_rate"] and "judge" in summary["win_rate"]
    flops = summary["flops"]
    assert flops["per_prompt"]["reward_forward"] == 0  # a rule costs no FLOPs of a network
    # the sampler computed every column at its 4 steps; the look-ahead, 2 candidates at the 3 steps that leave
    # masks, as many columns each
    cost, sequence = summary["cost_per_prompt"], flops["per_sequence"]
    assert cost["lookahead_columns"] == cost["dllm_columns"] * (2 * 3) / 4

    def dllm_flops(prefix):
        return (sequence["dllm_column"] * cost[f"{prefix}columns"] + sequence["dllm_head_column"]
                * cost[f"{prefix}head_columns"] + sequence["dllm_attention_key"] * cost[f"{prefix}attention_keys"])

    # an unguided sample is the sampler's own work per sample, not SVDD's look-ahead
    assert flops["unguided_sample"] == pytest.approx(dllm_flops("dllm_") / summary["num_samples"])
    assert flops["per_prompt"]["dllm"] == pytest.approx(dllm_flops("dllm_") + dllm_flops("lookahead_"))
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        from my_rewards import score
    finally:
        sys.path.remove(str(tmp_path))
    for line in (tmp_path / "job" / "results.jsonl").read_text().splitlines():
        record = json.loads(line)  # the recorded rewards are the function's scores of the responses
        prompt = Prompt(record["id"], record["prompt"])
        assert record["rewards"] == pytest.approx([score(prompt, r) for r in record["responses"]])


def test_the_ifeval_scorer_gives_the_share_of_the_prompts_instructions_followed():
    pytest.importorskip("eval_framework",
                        reason="IFEval's checkers come from llm-eval-framework: pip install -e '.[judges]'")
    prompt = Prompt("p", "Write about a banana, without commas.",
                    metadata={"instruction_id_list": ["punctuation:no_comma", "keywords:existence"],
                              "kwargs": [{}, {"keywords": ["banana"]}]})
    scorer = make_scorer(compose_config("reward=ifeval").reward)
    scorer.know([prompt])
    assert scorer.score_texts([prompt.text] * 3, ["A banana here.", "A banana, there.", "Yes, an apple."]) == \
        [1.0, 0.5, 0.0]
    with pytest.raises(ConfigError, match="reward=ifeval cannot score prompt"):  # a prompt without instruction ids
        scorer.score_texts(["another prompt"], ["text"])
