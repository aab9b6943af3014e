"""Post-training a masked diffusion LM on its own samples: RGRL, diffu-GRPO and rejection fine-tuning.

One trainer, TRL's ``GRPOTrainer`` with two things replaced: generation and scoring (a method of
:mod:`entrgi.methods`, guided or not, as ``entrgi.run`` samples) and the per-token log-probabilities
(the one-step masked-diffusion estimator; :mod:`entrgi.training.likelihood`). TRL,
transformers and accelerate do the rest: the data order, devices and DDP/DeepSpeed/FSDP, gradient
accumulation, the optimizer and scheduler, checkpoints and their resumption, logging.

The recipe (``RECIPES``) picks what is sampled and what is optimized:

- ``rgrl``: K EntRGi-guided completions per prompt, loss = minus their mean log-likelihood (online SFT;
  no advantages, KL or reference; the rewards are logged only);
- ``diffu_grpo``: K unguided completions, advantages normalized within each prompt's K, TRL's clipped
  GRPO objective with a KL penalty to the frozen policy (with LoRA, the base with the adapter disabled);
- ``rft``: K unguided completions, SFT on the best of each prompt's K.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.models.utils import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler

from entrgi.bookkeeping.storage import append_jsonl, read_jsonl, write_atomic, write_jsonl
from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import Prompt
from entrgi.methods.base import Generation, Method, SamplingSetup
from entrgi.models.loading import silence_library_deprecations
from entrgi.sampling.rng import row_key
from entrgi.training.evaluation import MODES, HeldOut, sample_held_out, summarize_held_out
from entrgi.training.likelihood import (ESTIMATORS, completion_log_probs, completion_mask, elbo_terms, mask_prompt,
                                       sequence_mean)


@dataclass(frozen=True)
class Recipe:
    guided: bool  # sample with EntRGi guidance
    objective: str  # "sft": maximize the log-likelihood of the selected completions; "grpo": TRL's loss
    keep: str = "all"  # sft: which completions of a prompt's K are trained on ("all" or "best")


CHECKPOINT_COMPLETE = "checkpoint-complete"  # written into checkpoint-<step>/ once every process has saved its part
RECIPES = {"rgrl": Recipe(guided=True, objective="sft"),
           "diffu_grpo": Recipe(guided=False, objective="grpo"),
           "rft": Recipe(guided=False, objective="sft", keep="best")}


def recipe_of(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown train.recipe={name!r}; use one of {sorted(RECIPES)}")
    return RECIPES[name]


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """GRPO advantages of ``rewards [B, K]``: each prompt's rewards less their mean, over their std."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + 1e-4)


def sequence_weights(recipe: Recipe, rewards: torch.Tensor) -> torch.Tensor:
    """Per-completion weights of the SFT loss for ``rewards [B, K]``, summing to B * K: all 1, or K on each
    prompt's best completion; the loss is then a plain mean over the trained completions."""
    if recipe.keep == "all":
        return torch.ones_like(rewards)
    best = torch.zeros_like(rewards).scatter_(-1, rewards.argmax(-1, keepdim=True), 1.0)
    return best * rewards.shape[-1]


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's sampler, reshuffled by (seed, epoch): a run resumed in a later epoch draws the epochs it
    would have drawn uninterrupted (the trainer calls ``set_epoch`` every epoch)."""

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def step_prompts(inputs: list[dict], num_samples: int, step: int) -> list[Prompt]:
    """A training batch's prompts, each K copies of it once, keyed by the step: a method draws a
    prompt's random streams from its id, so each step draws fresh samples (and a resumed step the same)."""
    return [Prompt(f"{x['id']}\x1estep{step}", x["prompt"]) for x in inputs[::num_samples]]


class DiffusionPolicyTrainer(GRPOTrainer):
    """``GRPOTrainer`` for a masked diffusion LM: see the module docstring.

    ``setup.dllm.model`` is the network TRL trains (wrapped by PEFT in place, so the setup samples the
    current policy); ``setup`` pads each batch to its own widths. ``method`` guides the samples of a
    guided recipe and of the guided evaluation. The train dataset's rows carry ``prompt`` and ``id``.
    """

    def __init__(self, *, setup: SamplingSetup, method: Method, recipe: str, prompt_mask_rate: float, out_dir: Path,
                 held_out: HeldOut, estimator: str = "one_step", likelihood_attention: str = "all",
                 completion_eos: str = "model", loss_scale: str = "per_sequence", **kwargs):
        self.setup, self.dllm, self.recipe = setup, setup.dllm, recipe_of(recipe)
        if estimator not in OBJECTIVES[self.recipe.objective].estimators:
            raise ConfigError(f"train.estimator={estimator!r}: use one_step, or elbo with an SFT recipe (rgrl, rft)")
        self.estimator = estimator
        self.attend_after_eos, self.loss_per_prompt = likelihood_attention == "all", loss_scale == "per_prompt"
        self.eos_ids = self.dllm.eos_ids if completion_eos == "model" else [self.dllm.tokenizer.eos_token_id]
        if None in self.eos_ids:
            raise ConfigError("train.completion_eos=tokenizer: the tokenizer names no EOS token; "
                              "set train.completion_eos=model (model.eos_tokens)")
        self.methods = {"unguided": Method(), "guided": method}  # Method(): no step hook
        self.prompt_mask_rate, self.held_out = prompt_mask_rate, held_out
        self.samples_log, self.eval_log = Path(out_dir) / "samples.jsonl", Path(out_dir) / "eval.jsonl"
        # the untrained policy's unguided held-out records: what every evaluation is compared with
        self.eval_baseline = next((r["records"] for r in read_jsonl(self.eval_log)
                                   if r["step"] == 0 and r["mode"] == "unguided"), None)

        def reward_model_score(prompts, completions, **_):
            # TRL asks for a reward source; the samples are scored in the method's ``generate`` with this model
            return setup.reward_model.score_texts(prompts, completions)

        silence_library_deprecations()  # TRL reads gradient-checkpointing names transformers deprecated
        super().__init__(model=self.dllm.model, reward_funcs=[reward_model_score],
                         processing_class=self.dllm.tokenizer, **kwargs)

    # -- the data order ---------------------------------------------------------------------------

    def _get_train_sampler(self, dataset=None):
        return EpochSeededRepeatSampler(
            data_source=dataset if dataset is not None else self.train_dataset, mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation, shuffle=self.shuffle_dataset,
            seed=self.args.seed)

    # -- generation and scoring -------------------------------------------------------------------

    @contextlib.contextmanager
    def _sampling_policy(self):
        """The current policy, gathered where the distributed setup shards it, in eval mode (no dropout)."""
        with unwrap_model_for_generation(self.model_wrapped, self.accelerator) as unwrapped:
            training = unwrapped.training
            unwrapped.eval()
            try:
                yield unwrapped
            finally:
                unwrapped.train(training)

    def _generate_and_score_completions(self, inputs: list[dict]) -> dict:
        K, step = self.num_generations, self.state.global_step
        if any(inputs[i]["id"] != inputs[i - i % K]["id"] for i in range(len(inputs))):
            raise RuntimeError("the sampler did not deliver each prompt's K copies together")
        prompts = step_prompts(inputs, K, step)
        with self._sampling_policy():
            out = self.methods["guided" if self.recipe.guided else "unguided"].generate(self.setup, prompts)
        device = self.accelerator.device
        encoded = self.dllm.encode_prompts([p.text for p in prompts])
        prompt_ids, prompt_mask = self.dllm.pad_prompts([ids for ids in encoded for _ in range(K)])
        completion_ids = out.output.tokens.to(device)
        # one prompt mask per batch, shared by the policy, the old policy and the reference
        generator = torch.Generator().manual_seed(row_key(self.args.seed, f"prompt-mask/{self.accelerator.process_index}",
                                                          step))
        masked_prompt = mask_prompt(prompt_ids, prompt_mask, self.dllm.mask_id, self.prompt_mask_rate, generator)
        rewards = torch.tensor(out.rewards, dtype=torch.float32, device=device).view(-1, K)
        batch = {
            "prompt_ids": masked_prompt, "prompt_mask": prompt_mask, "completion_ids": completion_ids,
            "completion_mask": completion_mask(completion_ids, self.eos_ids),
            "advantages": group_advantages(rewards).flatten(),
            "sequence_weight": sequence_weights(self.recipe, rewards).flatten(),
        }
        if OBJECTIVES[self.recipe.objective].reference:
            batch.update(self._reference_log_probs(batch))
        self._record_samples(step, [x["id"] for x in inputs[::K]], out, rewards)
        return batch

    def _reference_log_probs(self, batch: dict) -> dict:
        """The old policy's (when a batch is reused for several updates) and the frozen reference's
        per-token log-probabilities of a batch, without gradients."""
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
        attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
        length, out = batch["completion_ids"].shape[1], {}
        with torch.no_grad():
            if self.args.gradient_accumulation_steps % (self.args.steps_per_generation * self.num_iterations):
                out["old_per_token_logps"] = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention, length)[0]
            if self.beta != 0.0:
                with self.accelerator.unwrap_model(self.model).disable_adapter():
                    out["ref_per_token_logps"] = self._get_per_token_logps_and_entropies(
                        self.model, input_ids, attention, length)[0]
        return out

    def _record_samples(self, step: int, prompt_ids: list[str], out: Generation, rewards: torch.Tensor) -> None:
        """Metrics of the step's samples (all processes) and a line per process in ``samples.jsonl``.

        The line carries a checksum of the trainable weights the samples were drawn with: equal across
        processes when their updates are synchronized.
        """
        from accelerate.utils import gather_object

        gathered = self.accelerator.gather(rewards)
        metrics = self._metrics["train"]
        metrics["samples/reward_mean"].append(gathered.mean().item())
        metrics["samples/reward_top1"].append(gathered.max(-1).values.mean().item())
        cost = {"seconds": out.seconds, "dllm_forwards": out.output.dllm_forwards,
                **{f"reward_{name}s": count for name, count in out.reward_evaluations.items()}}
        for name, value in cost.items():  # the guidance's cost, per process and step
            metrics[f"samples/{name}"].append(float(value))
        checksum = sum(p.detach().double().abs().sum().item() for p in self.model.parameters() if p.requires_grad)
        line = {"step": step, "process": self.accelerator.process_index, "prompt_ids": prompt_ids,
                "texts": out.responses, "rewards": rewards.tolist(), "weights_checksum": checksum}
        lines = gather_object([line])
        if self.accelerator.is_main_process:
            append_jsonl(self.samples_log, lines)

    def _save_checkpoint(self, model, trial) -> None:
        """The trainer's checkpoint, then a marker that it is whole.

        Each process writes its own files (its RNG state; with DeepSpeed or FSDP its optimizer shard)
        and nothing waits for them before the main process writes ``trainer_state.json``: a kill in
        between left a checkpoint that looked complete and resumed with another process's dropout draws.
        """
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            write_atomic(folder / CHECKPOINT_COMPLETE, f"{self.state.global_step}\n")
        self.accelerator.wait_for_everyone()

    def create_model_card(self, *args, **kwargs) -> None:
        """TRL writes its template card at every checkpoint; a run's card is entrgi's (``entrgi.train``
        writes it at the end, from the run's settings and evaluations)."""

    # -- held-out evaluation ----------------------------------------------------------------------

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """The policy on the held-out prompts, unguided and guided, at the current step: each process
        samples its share; one line per mode in ``eval.jsonl``; the summary logged (W&B included)."""
        from accelerate.utils import gather_object

        step, metrics = self.state.global_step, {}
        share = self.held_out.prompts[self.accelerator.process_index::self.accelerator.num_processes]
        order = {p.id: i for i, p in enumerate(self.held_out.prompts)}
        for mode in MODES:
            with self._sampling_policy():
                mine = sample_held_out(self.held_out, share, self.methods[mode])
            records = sorted(gather_object(mine), key=lambda r: order[r["id"]])
            if self.eval_baseline is None and step == 0 and mode == "unguided":
                self.eval_baseline = records
            summary = summarize_held_out(records, self.eval_baseline or [], self.args.seed)
            if self.accelerator.is_main_process:
                append_jsonl(self.eval_log, [{"step": step, "mode": mode, "summary": summary, "records": records}])
            metrics.update({f"{metric_key_prefix}/{mode}/{name}/{stat}": value for name, stats in summary.items()
                            for stat, value in stats.items() if stat in ("mean", "stderr", "rate", "low", "high")})
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # -- the estimator ----------------------------------------------------------------------------

    def _likelihood_attention(self, attention_mask: torch.Tensor, completion_length: int) -> torch.Tensor:
        """The columns the likelihood forward attends: the prompt's and the completion's up to its first
        EOS (``attention_mask`` as given), or with ``likelihood_attention=all`` every completion column."""
        if not self.attend_after_eos:
            return attention_mask
        return torch.cat([attention_mask[:, :-completion_length],
                          torch.ones_like(attention_mask[:, -completion_length:])], dim=1)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, **_):
        """The d1 one-step estimate of each completion token's log-probability: the last
        ``logits_to_keep`` columns all masked, the prompt as given (already masked), one forward."""
        attention = self._likelihood_attention(attention_mask, logits_to_keep)
        size = batch_size or input_ids.shape[0]
        chunks = [completion_log_probs(self.dllm, input_ids[i:i + size], attention[i:i + size], logits_to_keep,
                                       network=model, entropy=compute_entropy)
                  for i in range(0, input_ids.shape[0], size)]
        entropies = torch.cat([e for _, e in chunks]) if compute_entropy else None
        return torch.cat([lp for lp, _ in chunks]), entropies, None

    def _compute_loss(self, model, inputs):
        return OBJECTIVES[self.recipe.objective].loss(self, model, inputs)


def grpo_loss(trainer: DiffusionPolicyTrainer, model, inputs) -> torch.Tensor:
    """TRL's GRPO loss (clipped ratio, KL to the reference) on the estimator's log-probabilities."""
    return GRPOTrainer._compute_loss(trainer, model, inputs)


def sft_loss(trainer: DiffusionPolicyTrainer, model, inputs) -> torch.Tensor:
    """Minus the weighted log-likelihood of the kept completions (``sequence_weight``), by the trainer's
    estimator; logs the mean log-likelihood and entropy."""
    weight = inputs["sequence_weight"]
    rows = weight > 0
    if not rows.any():  # a micro-batch without a trained completion still runs the model (DDP)
        rows = ~rows
    length = inputs["completion_ids"].shape[1]
    input_ids = torch.cat([inputs["prompt_ids"][rows], inputs["completion_ids"][rows]], 1)
    attention = torch.cat([inputs["prompt_mask"][rows], inputs["completion_mask"][rows]], 1)
    mask = inputs["completion_mask"][rows]
    # with the ELBO the one-step forward gives only the entropy metric: no graph to keep through the ELBO's
    with torch.no_grad() if trainer.estimator == "elbo" else contextlib.nullcontext():
        per_token, entropies = trainer._get_per_token_logps_and_entropies(model, input_ids, attention, length,
                                                                          compute_entropy=True)[:2]
    if trainer.estimator == "elbo":  # the same batch's ELBO terms take the one-step values' place in the loss
        stream = f"elbo/{trainer.accelerator.process_index}"
        generator = torch.Generator().manual_seed(row_key(trainer.args.seed, stream, trainer._step))
        per_token = elbo_terms(trainer.dllm, input_ids, trainer._likelihood_attention(attention, length), length,
                               generator, network=model)
    log_likelihood = sequence_mean(per_token, mask)
    # the weights sum to the micro-batch's sequences: over them a mean; over K, a sum of per-prompt means
    scale = trainer.num_generations if trainer.loss_per_prompt else weight.shape[0]
    loss = -(weight[rows] * log_likelihood).sum() / scale
    metrics = trainer._metrics["train"]
    metrics["log_likelihood"].append(trainer.accelerator.gather(log_likelihood.detach()).mean().item())
    metrics["entropy"].append(trainer.accelerator.gather(sequence_mean(entropies, mask)).mean().item())
    return loss / trainer.current_gradient_accumulation_steps


@dataclass(frozen=True)
class Objective:
    loss: Callable  # (trainer, model, inputs) -> the micro-batch's loss
    reference: bool  # needs the old policy's and the frozen reference's log-probabilities in the batch
    estimators: tuple[str, ...]  # the likelihood estimators it can train with


OBJECTIVES = {"sft": Objective(sft_loss, reference=False, estimators=ESTIMATORS),  # a recipe's objective -> its loss
              "grpo": Objective(grpo_loss, reference=True, estimators=("one_step",))}


def truncate_log(path: Path, step: int) -> None:
    """Drop the lines of steps from ``step`` on: a resumed run logs them again."""
    path = Path(path)
    if path.exists():
        write_jsonl(path, [r for r in read_jsonl(path) if r.get("step", 0) < step])


class EvaluateEvery(TrainerCallback):
    """Ask for the held-out evaluation every ``every`` steps (0: never) and after the last step."""

    def __init__(self, every: int):
        self.every = every

    def on_step_end(self, args, state, control, **kwargs):
        if (self.every and state.global_step % self.every == 0) or state.global_step >= state.max_steps:
            control.should_evaluate = True
        return control
