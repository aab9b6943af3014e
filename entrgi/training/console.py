"""What ``python -m entrgi.train`` prints: the runner's console, not the trainer's raw log dicts.

A progress bar over the optimizer steps (the step's loss and sample reward beside it), one line per
held-out evaluation and mode against the untrained policy (step 0), and a closing summary, which
also goes to the run's log file. Every logged value still reaches W&B and the run's files; only the
console is shaped here.
"""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from entrgi.bookkeeping.progress import add_to_log_files
from entrgi.bookkeeping.storage import read_jsonl

def _figure(stat: dict) -> str:
    return f"{stat['mean']:+.4f} +- {stat['stderr']:.4f}"


def _rate(stat: dict) -> str:
    return f"{stat['rate']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"


def evaluation_line(step: int, mode: str, result: dict, untrained: dict | None, judge: str | None) -> str:
    """One held-out evaluation of one mode: the top-1 reward beside the untrained policy's in the same mode,
    the win-rates against the untrained policy's unguided answers (what every evaluation is compared with)."""
    if step == 0 and mode == "unguided":  # the reference itself
        return f"eval step 0 (untrained) {mode}: top-1 reward {_figure(result['top1_reward'])}"
    line = (f"eval step {step}{' (untrained)' if step == 0 else ''} {mode}: "
            f"top-1 reward {_figure(result['top1_reward'])}")
    if untrained is not None:
        line += f" (untrained {untrained['top1_reward']['mean']:+.4f})"
    line += f"; win-rate vs untrained unguided: reward {_rate(result['win_rate_reward'])}"
    if "win_rate_judge" in result:
        line += f", judge{f' {judge}' if judge else ''} {_rate(result['win_rate_judge'])}"
    return line


def summary_lines(summary: dict, judge: str | None = None) -> list[str]:
    """The closing summary of a training run: the last evaluation against the untrained policy's."""
    untrained = summary.get("untrained_eval", {})
    lines = [f"{summary['recipe']}: {summary['steps']} steps on {summary['train_prompts']} prompts, "
             f"{summary['processes']} process(es); held-out top-1 reward at step {summary['steps']} and untrained "
             f"(step 0); win-rates against the untrained policy sampled unguided"]
    judged = f"judge {judge}" if judge else "judge"
    for mode, result in summary["final_eval"].items():
        before = untrained.get(mode)
        lines.append(f"  {mode:9} top-1 reward          {_figure(result['top1_reward'])}")
        if before:
            lines.append(f"  {mode:9} untrained top-1 reward {_figure(before['top1_reward'])}")
        lines.append(f"  {mode:9} win-rate, guiding reward  {_rate(result['win_rate_reward'])}")
        if "win_rate_judge" in result:
            lines.append(f"  {mode:9} win-rate, {judged:15} {_rate(result['win_rate_judge'])}")
    lines.append(f"  adapter in {summary['adapter']}")
    return lines


def print_summary(summary: dict, judge: str | None = None) -> None:
    """Print the closing summary, and add it to the run's log file (Hydra's ``train.log``)."""
    lines = summary_lines(summary, judge)
    print("\n" + "\n".join(lines))
    add_to_log_files("summary\n" + "\n".join(lines))


class TrainingConsole(TrainerCallback):
    """Replaces transformers' progress callback (which prints every log dict): see the module docstring.

    ``eval_log``: the run's ``eval.jsonl``, where each evaluation and the untrained policy's (step 0,
    also after a resume) are read from; ``judge``: the held-out judge's name, for the lines."""

    def __init__(self, eval_log: Path, judge: str | None):
        self.eval_log, self.judge, self.bar = Path(eval_log), judge, None

    @classmethod
    def install(cls, trainer, eval_log: Path, judge: str | None) -> None:
        for callback in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(callback)
        trainer.add_callback(cls(eval_log, judge))

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            from tqdm import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                            dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.bar is not None and logs and "loss" in logs:
            shown = {"loss": logs["loss"], "sample reward": logs.get("samples/reward_mean")}
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items() if v is not None}, refresh=False)

    def on_evaluate(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        lines = read_jsonl(self.eval_log)
        untrained = {r["mode"]: r["summary"] for r in lines if r["step"] == 0}
        for line in lines:
            if line["step"] == state.global_step:
                text = evaluation_line(line["step"], line["mode"], line["summary"],
                                       untrained.get(line["mode"]) if line["step"] else None, self.judge)
                if self.bar is not None:
                    self.bar.write(text)
                else:
                    print(text)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

