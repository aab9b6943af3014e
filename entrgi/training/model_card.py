"""The model card of a training run (``README.md`` in the run directory and in ``adapter/``): what was
trained, on what, how, and how it did on the held-out prompts against the untrained policy."""

from __future__ import annotations

from omegaconf import DictConfig

from entrgi.models.loaders import family
from entrgi.training.trainer import recipe_of


def recipe_text(name: str, num_samples: int) -> str:
    recipe = recipe_of(name)
    drawn = f"{num_samples} {'EntRGi-guided' if recipe.guided else 'unguided'} samples per prompt"
    if recipe.objective == "grpo":
        return (f"{drawn}, advantages normalized within each prompt's {num_samples}, TRL's clipped GRPO "
                f"objective with a KL penalty to the untrained policy")
    trained = "all of them" if recipe.keep == "all" else f"the best of each prompt's {num_samples} by the reward"
    return f"{drawn}; maximizes the log-likelihood of {trained}"


def _cell(stat: dict | None, rate: bool = False) -> str:
    if not stat:
        return "-"
    if rate:
        return f"{stat['rate']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
    return f"{stat['mean']:+.4f} ± {stat['stderr']:.4f}"


def model_card(cfg: DictConfig, summary: dict, judge: str | None) -> str:
    t, lora = cfg.train, cfg.train.lora
    record = family(cfg.model.loader)  # null targets: the model family's
    targets = [*(lora.target_modules or record.lora_targets),
               *(lora.get("target_parameters") or record.lora_parameters)]
    steps = summary["steps"]
    rows = []
    for mode, result in summary["final_eval"].items():
        before = summary.get("untrained_eval", {}).get(mode, {})
        rows.append(f"| {mode} | {_cell(before.get('top1_reward'))} | {_cell(result['top1_reward'])} | "
                    f"{_cell(result['win_rate_reward'], True)} | {_cell(result.get('win_rate_judge'), True)} |")
    return "\n".join([
        f"# {t.recipe}: a LoRA adapter for `{cfg.model.name}`",
        "",
        f"A LoRA adapter (r={lora.r}, alpha={lora.alpha}, on {', '.join(targets)}) for the masked "
        f"diffusion LM `{cfg.model.name}` (`{cfg.model.path}`), post-trained with entrgi (`python -m entrgi.train`) "
        f"by the `{t.recipe}` recipe: {recipe_text(t.recipe, t.num_samples)}.",
        "",
        f"- Training prompts: `{cfg.train_prompts.name}` ({summary['train_prompts']} prompts), seed {cfg.seed}",
        f"- Guiding reward model: `{cfg.reward.name}` (`{cfg.reward.path}`)",
        f"- {steps} optimizer steps, learning rate {t.lr} ({t.lr_scheduler}), {t.batch_size} sequences per process "
        f"and step on {summary['processes']} process(es); samples of {cfg.sampler.gen_length} tokens in "
        f"{cfg.sampler.steps} denoising steps",
        "",
        f"## Held-out evaluation: step {steps} against the untrained policy (step 0)",
        "",
        f"{t.eval.num_prompts} prompts of `{cfg.benchmark.name}` never trained on, {t.eval.num_samples} samples "
        f"each; top-1 reward by the guiding reward model (mean ± standard error); win-rates of the top-1 against "
        f"the untrained policy's unguided top-1, prompt by prompt, with bootstrap 95% intervals"
        f"{f', by the guiding reward and by the judge `{judge}`' if judge else ''}.",
        "",
        f"| sampling | untrained top-1 reward | step {steps} top-1 reward | win-rate, reward | win-rate, judge |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
        "## Use",
        "",
        "```",
        f"python -m entrgi.run model={cfg.model.name} model.adapter={summary['adapter']} method=entrgi  # or base, bon",
        "```",
        "",
        "The run directory also holds `config.yaml` (every setting), `summary.json`, `eval.jsonl` (each held-out "
        "evaluation), `samples.jsonl` (the training samples and rewards) and `train.log`.",
        "",
    ])
