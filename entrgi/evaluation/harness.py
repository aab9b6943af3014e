"""An lm-evaluation-harness model that answers with any method of this runner (registered as ``entrgi``).

``generate_until`` samples K responses per context with the method (base, bon, fk, expectation, aps,
entrgi, ...) on the job's dLLM, reward model, sampler and seed, and answers with the method's chosen
sample cut at the task's stop sequences. ``loglikelihood`` is the masked-diffusion bound, a Monte
Carlo mean over how many of the continuation's tokens are masked
(:func:`entrgi.training.likelihood.masked_count_estimates`), so multiple-choice tasks run too.

Contexts go to the dLLM as one user turn of its chat template, as everywhere in this runner (the
methods' reward model scores a chat turn too); a continuation is scored as the assistant's reply.

Answers are kept one JSON line per request (``answers``), keyed by a digest of the request and the
job's settings, so a killed evaluation resumes at request granularity. Used by ``entrgi.evaluate``;
users of lm-eval's own API can pass an ``EntrgiLM`` or ``model="entrgi"`` with Hydra overrides as
``model_args`` (see docs/lm-eval.md).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from lm_eval.api.model import LM

from entrgi.bookkeeping.baseline import BaselineCache
from entrgi.bookkeeping.progress import progress_bars
from entrgi.bookkeeping.records import PromptResult
from entrgi.bookkeeping.settings import digest
from entrgi.bookkeeping.storage import ResultsLog
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt, _stable_id
from entrgi.methods.unguided import best_of_k
from entrgi.methods.base import Method, SamplingSetup
from entrgi.models.diffusion import DiffusionLM
from entrgi.models.reward import RewardModel
from entrgi.sampling.sampler import SamplerConfig, commit_plan
from entrgi.training.likelihood import masked_count_estimates, stratified_mask_counts

log = logging.getLogger("entrgi")
# generation settings a task may give that the methods do not take: the sampler's come from the config
SAMPLING_KWARGS_IGNORED = ("do_sample", "temperature", "top_p", "top_k")


@dataclass
class HarnessSettings:
    """The backend's own settings (``harness:`` in conf/evaluate.yaml)."""

    gen_length: int | None = None  # None: each task's max_gen_toks (else sampler.gen_length); an int: always that
    loglikelihood_draws: int = 64  # Monte Carlo draws per loglikelihood request (LLaDA: 128)
    loglikelihood_batch: int = 32  # draws per dLLM forward

    def __post_init__(self):
        for key in ("loglikelihood_draws", "loglikelihood_batch"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"harness.{key}={value!r} must be an integer >= 1")
        if self.gen_length is not None and (not isinstance(self.gen_length, int) or isinstance(self.gen_length, bool)
                                            or self.gen_length < 1):
            raise ConfigError(f"harness.gen_length={self.gen_length!r} must be null (the task's max_gen_toks) "
                              f"or an integer >= 1")


def request_sampler(base: SamplerConfig, wanted: int) -> SamplerConfig:
    """``base`` for a response of at least ``wanted`` tokens: the length rounded up to whole blocks,
    the steps scaled to keep ``base``'s tokens per step, rounded up to a multiple of the blocks."""
    if not isinstance(wanted, int) or wanted < 1:
        raise ConfigError(f"a task asks for max_gen_toks={wanted!r}; need an integer >= 1 (or set harness.gen_length)")
    block = base.block_length or wanted
    gen_length = math.ceil(wanted / block) * block
    blocks = gen_length // block
    steps = math.ceil(math.ceil(gen_length * base.steps / base.gen_length) / blocks) * blocks
    sampler = replace(base, gen_length=gen_length, steps=steps)
    commit_plan(sampler.gen_length, sampler.steps, sampler.block_length, sampler.eps)  # refuses what cannot run
    return sampler


def cut_at_stops(text: str, until: list[str]) -> str:
    """``text`` up to the earliest of the stop sequences ``until``."""
    cut = min((i for i in (text.find(stop) for stop in until if stop) if i >= 0), default=len(text))
    return text[:cut]


class EntrgiLM(LM):
    """lm-eval's model interface over a method of this runner; see the module docstring."""

    def __init__(self, dllm: DiffusionLM, reward_model: RewardModel, method: Method, sampler: SamplerConfig,
                 num_samples: int = 4, seed: int = 0, batch_size: int = 4, harness: HarnessSettings | None = None,
                 answers: Path | None = None, baseline_cache: Callable[[dict], BaselineCache] | None = None,
                 salt: str = ""):
        """``answers``: where answered requests are kept (None: in memory); ``baseline_cache``: the shared
        best-of-K cache for extra settings (None: base and bon sample their own); ``salt``: the job's
        settings digest, part of every request's key."""
        super().__init__()
        self.dllm, self.reward_model, self.method, self.sampler = dllm, reward_model, method, sampler
        self.num_samples, self.seed, self.batch_size = num_samples, seed, batch_size
        self.harness = harness or HarnessSettings()
        self.answers = ResultsLog(answers) if answers is not None else None
        self.rows: dict[str, dict] = {r["id"]: r for r in self.answers.records} if self.answers else {}
        self.baseline_cache, self.salt = baseline_cache, salt
        self.prepared: dict[str, dict] = {}  # what the method prepared, per task
        self.ignored: set[str] = set()

    def _store(self, rows: list[dict]) -> None:
        if self.answers is not None:
            self.answers.append(rows)
        self.rows.update((r["id"], r) for r in rows)

    def _key(self, *request) -> str:
        return digest([self.salt, *request])[:24]

    # generation

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[tuple[str, int], list[tuple[int, str, list[str]]]] = {}
        for i, request in enumerate(requests):
            context, gen_kwargs = request.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            wanted = self.harness.gen_length or gen_kwargs.pop("max_gen_toks", self.sampler.gen_length)
            self._note_ignored(gen_kwargs)
            groups.setdefault((request.task_name or "", wanted), []).append((i, context, until))
        answers: list[str | None] = [None] * len(requests)
        for (task, wanted), members in groups.items():
            sampler = request_sampler(self.sampler, wanted)
            prompts = list({context: Prompt(_stable_id(context), context) for _, context, _ in members}.values())
            rows = self._generations(task, sampler, prompts)
            for i, context, until in members:
                row = rows[_stable_id(context)]
                answers[i] = cut_at_stops(row["responses"][row["answer_index"]], until)
        return answers

    def _note_ignored(self, gen_kwargs: dict) -> None:
        new = {key for key in gen_kwargs if key in SAMPLING_KWARGS_IGNORED} - self.ignored
        if new:
            log.warning("the task's %s are ignored: the method samples with the config's sampler settings",
                        sorted(new))
            self.ignored |= new

    def _generations(self, task: str, sampler: SamplerConfig, prompts: list[Prompt]) -> dict[str, dict]:
        """Each prompt's stored row (its K samples and the method's answer), sampling the missing ones.

        The padding widths come from all of a task's contexts of one length, so a context's answer
        depends neither on its batch nor on the other tasks of the job.
        """
        setup = SamplingSetup.for_prompts(self.dllm, self.reward_model, prompts, sampler, self.num_samples, self.seed)
        key = {p.id: self._key("generate_until", task, asdict(sampler), p.text) for p in prompts}
        todo = [p for p in prompts if key[p.id] not in self.rows]
        if todo:
            if len(todo) < len(prompts):
                log.info("%s: resuming, %d of %d contexts already answered", task, len(prompts) - len(todo),
                         len(prompts))
            self.prepared[task] = self.method.prepare(setup, prompts)
            shared = self.method.shares_baseline_samples
            sample = best_of_k().sample if shared else self.method.sample

            def answered(records: list[PromptResult]) -> list[dict]:
                return [{**r.to_json(), "id": key[r.id], "prompt_id": r.id, "kind": "generate_until", "task": task,
                         "answer_index": self.method.answer_index(r)} for r in records]

            with progress_bars(f"{self.method.name} {task}", len(prompts), len(prompts) - len(todo)) as (
                    batch_done, setup.on_step):
                if shared and self.baseline_cache is not None:  # the K samples every base/bon job shares
                    cache = self.baseline_cache({"sampler": asdict(sampler), "lm_eval": {
                        "task": task, "contexts": digest(sorted(p.text for p in prompts))}})
                    cached = cache.records(todo, lambda batch: [r.to_json() for r in sample(setup, batch)],
                                           self.batch_size, on_batch=batch_done)
                    self._store(answered([PromptResult.from_json(r) for r in cached]))
                else:
                    for start in range(0, len(todo), self.batch_size):
                        batch = todo[start:start + self.batch_size]
                        self._store(answered(sample(setup, batch)))
                        batch_done(len(batch))
        return {p.id: self.rows[key[p.id]] for p in prompts}

    # likelihood

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        out = []
        for request in requests:
            context, continuation = request.args
            key = self._key("loglikelihood", context, continuation, self.harness.loglikelihood_draws)
            if key not in self.rows:
                started = time.perf_counter()
                value, greedy, forwards = self.continuation_loglikelihood(context, continuation)
                self._store([{"id": key, "kind": "loglikelihood", "task": request.task_name or "",
                              "loglikelihood": value, "is_greedy": greedy,
                              "cost": {"seconds": time.perf_counter() - started, "dllm_forwards": forwards,
                                       "reward_forwards": 0, "reward_backwards": 0}}])
            row = self.rows[key]
            out.append((row["loglikelihood"], row["is_greedy"]))
        return out

    def continuation_loglikelihood(self, context: str, continuation: str) -> tuple[float, bool, int]:
        """The estimated log-likelihood of ``continuation`` as the reply to ``context``, whether each of its
        tokens is the model's top choice with the whole continuation masked, and the dLLM forwards it took.

        The draws' random stream comes from the request and the seed only: the estimate depends on neither
        the method (a likelihood is the model's) nor the other requests.
        """
        dllm = self.dllm
        prompt = dllm.encode_prompts([context])[0]
        target = list(dllm.tokenizer(continuation, add_special_tokens=False)["input_ids"])
        if not target:
            return 0.0, True, 0
        dllm.check_length(len(prompt) + len(target))
        length, draws = len(target), self.harness.loglikelihood_draws
        ids = torch.tensor([prompt + target], device=dllm.device)
        generator = torch.Generator().manual_seed(int(digest([self.seed, context, continuation])[:15], 16))
        counts = stratified_mask_counts(draws, length, generator)
        estimates = []
        for start in range(0, draws, self.harness.loglikelihood_batch):
            rows = counts[start:start + self.harness.loglikelihood_batch]
            batch = ids.expand(len(rows), -1)
            estimates.append(masked_count_estimates(dllm, batch, torch.ones_like(batch), length, rows, generator))
        masked = torch.cat([ids[:, :len(prompt)], torch.full_like(ids[:, len(prompt):], dllm.mask_id)], dim=1)
        greedy = bool((dllm.logits(masked, torch.ones_like(ids), start=len(prompt)).argmax(-1)
                       == ids[:, len(prompt):]).all())
        forwards = math.ceil(draws / self.harness.loglikelihood_batch) + 1
        return torch.cat(estimates).mean().item(), greedy, forwards

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        raise ConfigError("entrgi's backend answers generate_until, loglikelihood and multiple_choice requests, "
                          "not loglikelihood_rolling (perplexity tasks); choose generation or multiple-choice tasks")

    # costs

    def costs_by_task(self) -> dict[str, dict]:
        """Per task: requests answered and the summed dLLM forwards, reward forward and backward passes and
        seconds (for best-of-K's shared samples, the time whoever computed them took)."""
        out: dict[str, dict] = {}
        for row in self.rows.values():
            cost = out.setdefault(row["task"], {"requests": 0, "seconds": 0.0, "dllm_forwards": 0.0,
                                                "reward_forwards": 0.0, "reward_backwards": 0.0})
            cost["requests"] += 1
            for name in ("seconds", "dllm_forwards", "reward_forwards", "reward_backwards"):
                cost[name] += row["cost"].get(name, 0)
        return out
