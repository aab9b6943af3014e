"""The lm-evaluation-harness backend and ``python -m entrgi.evaluate``, offline on the embedded stack with
local tasks (a YAML over a JSON lines file written here)."""

import itertools
import json
import math
import sys

import pytest
import torch

pytest.importorskip("lm_eval", reason="the lm-eval backend needs pip install -e '.[harness]'")

from hydra import compose, initialize_config_dir  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402

from entrgi.errors import ConfigError  # noqa: E402
from entrgi.evaluate import CONF_DIR, build_backend, evaluate, require_lm_eval  # noqa: E402
from entrgi.evaluation.harness import cut_at_stops, request_sampler  # noqa: E402
from entrgi.run import run  # noqa: E402
from entrgi.sampling.sampler import SamplerConfig  # noqa: E402

from conftest import compose_config  # noqa: E402

QUESTIONS = ["Using the words return and integer, say what `math.gcd` does.",
             "Using the words path and components, say what `os.path.join` does.",
             "Using the words list and sorted, say what `sorted` does."]
TINY = ["logger=none", "sampler.gen_length=8", "batch_size=2", "harness.loglikelihood_draws=4"]
TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: {output_type}
doc_to_text: "{{{{question}}}}"
doc_to_target: {target}
{extra}
metric_list:
  - metric: {metric}
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """Local tasks over three documents: tiny_gen (generation, exact match, cut at '.'), tiny_mc (multiple
    choice) and tiny_ppl (loglikelihood_rolling, which the backend refuses)."""
    folder = tmp_path_factory.mktemp("tasks")
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "It"}) + "\n" for q in QUESTIONS))
    tasks = {
        "tiny_gen": dict(output_type="generate_until", target='"{{answer}}"', metric="exact_match",
                         extra='generation_kwargs:\n  until: ["."]\n  max_gen_toks: 8'),
        "tiny_mc": dict(output_type="multiple_choice", target="0", metric="acc",
                        extra='doc_to_choice: ["It returns an integer.", "It joins the path."]'),
        "tiny_ppl": dict(output_type="loglikelihood_rolling", target='"{{question}}"', metric="word_perplexity",
                         extra=""),
    }
    for name, fields in tasks.items():
        (folder / f"{name}.yaml").write_text(TASK.format(name=name, data=data, **fields))
    return folder


def compose_evaluate(*overrides):
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        return compose("evaluate", overrides=list(overrides))


def generation_request(context, until=(), max_gen_toks=8, task="t"):
    return Instance("generate_until", {}, (context, {"until": list(until), "max_gen_toks": max_gen_toks}), 0,
                    (task, 0, 1))


def test_a_local_task_runs_end_to_end_with_two_methods_and_reports_tasks_by_methods(task_dir, tmp_path):
    from entrgi.report import main as report_main

    summaries = {}
    for method in ("bon", "entrgi"):
        cfg = compose_evaluate(*TINY, "tasks=[tiny_gen,tiny_mc]", f"task_paths=[{task_dir}]", f"method={method}")
        out = tmp_path / "sweep" / method
        summary = evaluate(cfg, out)
        summaries[method] = summary
        # lm-eval's exact match is the share of answers (cut at '.') equal to the target, recomputed here
        samples = [json.loads(line) for line in (out / "samples" / "tiny_gen.jsonl").read_text().splitlines()]
        assert len(samples) == len(QUESTIONS)
        hits = [s["filtered_resps"][0] == "It" for s in samples]
        assert summary["metrics"]["tiny_gen"]["exact_match"]["value"] == pytest.approx(sum(hits) / len(hits))
        assert all("." not in s["resps"][0][0] for s in samples)
        assert summary["metrics"]["tiny_mc"]["acc"]["stderr"] is not None
        assert json.loads((out / "results.json").read_text())["results"]["tiny_mc"]["acc,none"] == \
            summary["metrics"]["tiny_mc"]["acc"]["value"]
        costs = summary["costs"]
        assert costs["tiny_gen"]["requests"] == 3 and costs["tiny_mc"]["requests"] == 6  # 3 docs x 2 choices
        assert costs["tiny_gen"]["dllm_forwards"] > 0 and costs["tiny_mc"]["dllm_forwards"] > 0
        assert (out / "config.yaml").exists()
    assert summaries["entrgi"]["costs"]["tiny_gen"]["reward_backwards"] > 0  # guided: gradients through the reward
    assert summaries["bon"]["costs"]["tiny_gen"]["reward_backwards"] == 0
    assert summaries["bon"]["metrics"]["tiny_mc"] == summaries["entrgi"]["metrics"]["tiny_mc"]  # the model's own
    # a finished job is not run again
    assert evaluate(compose_evaluate(*TINY, "tasks=[tiny_gen,tiny_mc]", f"task_paths=[{task_dir}]", "method=bon"),
                    tmp_path / "sweep" / "bon") == summaries["bon"]
    assert report_main([str(tmp_path / "sweep")]) == 0
    report = (tmp_path / "sweep" / "report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| task | metric"))
    assert "bon" in header and "entrgi" in header
    acc = summaries["entrgi"]["metrics"]["tiny_mc"]["acc"]
    assert f"{acc['value']:.3f} ± {acc['stderr']:.3f}" in report


@pytest.mark.parametrize("method", ["entrgi", "bon"])
def test_the_backend_answers_what_entrgi_run_samples_for_the_same_prompt_seed_and_method(method, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in QUESTIONS))
    common = ["logger=none", "sampler.gen_length=8", "sampler.steps=4", f"method={method}", "seed=3",
              f"baseline.cache_dir={tmp_path / 'cache'}"]
    run_cfg = compose_config(*common, "benchmark=jsonl", f"benchmark.path={prompts}")
    run(run_cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    from entrgi.from_config import build_method
    from entrgi.bookkeeping.records import PromptResult

    chosen = build_method(run_cfg)
    expected = {r["prompt"]: r["responses"][chosen.answer_index(PromptResult.from_json(r))] for r in records}
    # a private cache: the backend's best-of-K samples are its own, not read from entrgi.run's
    backend = build_backend(compose_evaluate(*common, f"baseline.cache_dir={tmp_path / 'harness-cache'}"))
    answers = backend.generate_until([generation_request(q) for q in QUESTIONS])
    assert answers == [expected[q] for q in QUESTIONS]


def test_stop_sequences_cut_the_answer(tmp_path):
    backend = build_backend(compose_evaluate(*TINY, "method=base", f"baseline.cache_dir={tmp_path}"))
    full = backend.generate_until([generation_request(q) for q in QUESTIONS])
    stop = next(a for a in full if len(a) > 3)[2:4]  # a piece of one answer
    cut = backend.generate_until([generation_request(q, until=[stop]) for q in QUESTIONS])
    assert cut == [a[:a.index(stop)] if stop in a else a for a in full]
    assert any(len(c) < len(a) for c, a in zip(cut, full))
    assert cut_at_stops("a, b. c", [".", ","]) == "a"  # the earliest stop wins, whichever is listed first
    assert cut_at_stops("abc", ["", "x"]) == "abc"


def test_the_generation_length_is_rounded_to_what_the_sampler_needs():
    base = SamplerConfig(gen_length=32, steps=16, block_length=8)
    sampler = request_sampler(base, 20)
    assert (sampler.gen_length, sampler.steps) == (24, 12)  # three blocks, two tokens per step
    assert request_sampler(SamplerConfig(gen_length=32, steps=16), 5).gen_length == 5
    with pytest.raises(ConfigError, match="max_gen_toks"):
        request_sampler(base, 0)


def direct_loglikelihood(dllm, prompt, target):
    """The masked-diffusion bound, exactly: for k masked tokens (k uniform on 1..L) the mean over every
    k-subset of the masked tokens' log-probabilities, weighted L / k: one forward per subset."""
    length = len(target)
    subsets = [s for k in range(1, length + 1) for s in itertools.combinations(range(length), k)]
    ids = torch.tensor([prompt + target] * len(subsets))
    for row, subset in enumerate(subsets):
        ids[row, [len(prompt) + i for i in subset]] = dllm.mask_id
    log_probs = dllm.logits(ids, torch.ones_like(ids), start=len(prompt)).float().log_softmax(-1)
    per_token = log_probs.gather(-1, torch.tensor([target] * len(subsets)).unsqueeze(-1)).squeeze(-1)
    total = 0.0
    for row, subset in enumerate(subsets):
        k = len(subset)
        total += per_token[row, list(subset)].sum().item() * length / k / (math.comb(length, k) * length)
    return total


def test_loglikelihood_agrees_with_a_direct_computation_on_the_tiny_model(tmp_path):
    backend = build_backend(compose_evaluate(*TINY, "harness.loglikelihood_draws=240",
                                             "harness.loglikelihood_batch=64"))
    dllm = backend.dllm
    context, continuations = QUESTIONS[0], ["It", " returns the integer"]
    prompt = dllm.encode_prompts([context])[0]
    targets = [dllm.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    assert len(targets[0]) == 1 and 3 <= len(targets[1]) <= 5
    requests = [Instance("loglikelihood", {}, (context, c), 0, ("t", 0, 1)) for c in continuations]
    (one, greedy), (several, _) = backend.loglikelihood(requests)
    # one token: always masked, so the estimate is exact
    assert one == pytest.approx(direct_loglikelihood(dllm, prompt, targets[0]), abs=1e-4)
    with torch.no_grad():
        logits = dllm.logits(torch.tensor([prompt + [dllm.mask_id]]), torch.ones(1, len(prompt) + 1, dtype=torch.long),
                             start=len(prompt))
    assert greedy == (logits.argmax(-1).item() == targets[0][0])
    # several: Monte Carlo over how many are masked; every count equally often, only the subsets drawn
    exact = direct_loglikelihood(dllm, prompt, targets[1])
    assert several == pytest.approx(exact, rel=0.05)  # about 4 standard deviations of 240 draws here
    assert backend.loglikelihood(requests[1:])[0][0] == several  # answered once, then read back


def test_a_killed_evaluation_resumes_without_repeating_or_losing_requests(task_dir, tmp_path):
    overrides = [*TINY, "tasks=[tiny_gen,tiny_mc]", f"task_paths=[{task_dir}]", "method=entrgi", "batch_size=1"]
    whole = evaluate(compose_evaluate(*overrides), tmp_path / "whole")
    rows = (tmp_path / "whole" / "requests.jsonl").read_text().splitlines()
    assert len(rows) == 3 + 6
    # the job killed after one answered request, halfway through writing the next one
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "settings.json").write_text((tmp_path / "whole" / "settings.json").read_text())
    kept = json.loads(rows[0])
    kept["cost"]["seconds"] = 12345.0  # a mark: this request must be read back, not answered again
    (killed / "requests.jsonl").write_text(json.dumps(kept) + "\n" + rows[1][:40])
    resumed = evaluate(compose_evaluate(*overrides), killed)
    again = [json.loads(line) for line in (killed / "requests.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in again) == sorted(json.loads(r)["id"] for r in rows)  # each once
    assert again[0]["cost"]["seconds"] == 12345.0
    strip = lambda r: {k: v for k, v in r.items() if k != "cost"}  # noqa: E731
    assert sorted(map(json.dumps, map(strip, again))) == sorted(json.dumps(strip(json.loads(r))) for r in rows)
    assert resumed["metrics"] == whole["metrics"]


def test_bad_input_fails_with_one_line_naming_the_fix(task_dir, tmp_path, monkeypatch):
    def fails(*overrides):
        with pytest.raises(ConfigError) as error:
            evaluate(compose_evaluate("logger=none", f"task_paths=[{task_dir}]", *overrides), tmp_path / "job")
        assert "\n" not in str(error.value)
        return str(error.value)

    assert "lm-eval ls tasks" in fails("tasks=[no_such_task]")
    assert "lm-eval ls tasks" in fails("tasks=[]")
    assert "loglikelihood_rolling" in fails("tasks=[tiny_ppl]")
    assert "harness.loglikelihood_draws" in fails("tasks=[tiny_gen]", "harness.loglikelihood_draws=0")
    assert not (tmp_path / "job").exists()  # refused before anything was written or loaded
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if lm-eval were not installed
    with pytest.raises(ConfigError, match=r"pip install 'entrgi\[harness\]'"):
        require_lm_eval()


def test_lm_eval_users_get_the_backend_by_name_with_hydra_overrides_as_model_args(task_dir, tmp_path):
    import lm_eval
    from lm_eval.api.registry import get_model

    from entrgi.evaluate import task_manager  # importing entrgi.evaluate registers the backend
    from entrgi.evaluation.harness import EntrgiLM

    assert issubclass(get_model("entrgi"), EntrgiLM)
    results = lm_eval.simple_evaluate(
        model="entrgi", model_args=f"method=base,sampler.gen_length=8,baseline.cache_dir={tmp_path}",
        tasks=["tiny_gen"], task_manager=task_manager((str(task_dir),)), limit=2)
    assert len(results["samples"]["tiny_gen"]) == 2 and "exact_match,none" in results["results"]["tiny_gen"]


def test_an_evaluation_logs_its_metrics_and_costs_to_wandb(task_dir, tmp_path, monkeypatch):
    from wandb_offline import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_evaluate(*TINY, "logger=wandb", "tasks=[tiny_mc]", f"task_paths=[{task_dir}]", "method=base")
    summary = evaluate(cfg, tmp_path / "job")
    (run_dir,) = (tmp_path / "job" / "wandb").glob("offline-run-*")
    logged = read_run(run_dir)
    assert logged["summary"]["lm_eval/tiny_mc/acc/value"] == summary["metrics"]["tiny_mc"]["acc"]["value"]
    assert logged["summary"]["costs/tiny_mc/dllm_forwards"] == summary["costs"]["tiny_mc"]["dllm_forwards"]
    assert "tiny_mc" in logged["tags"] and "base" in logged["tags"]
