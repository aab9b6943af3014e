"""Best-of-N at a guided run's cost: the N whose unguided sampling costs what the run cost per prompt.

    python -m entrgi.costs outputs/sweeps/<name>/<entrgi job dir>
    python -m entrgi.costs <job dir> --bon <a bon job dir>   # bon's seconds from that job instead

Reads the job's ``summary.json`` (its FLOPs per prompt and per sequence, see docs/cost-model.md) and
prints the matched N twice: by FLOPs (from the models' shapes: device-independent), and by measured
seconds (against bon's seconds per sample: the job's shared best-of-K cache, or ``--bon``; compare
seconds only when both ran on the same device), each with the ``num_samples=`` override to use.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from entrgi.bookkeeping.storage import read_json, read_jsonl
from entrgi.evaluation.flop_model import SequenceFlops
from entrgi.errors import ConfigError


@dataclass
class Match:
    """Best-of-N matched to a guided run's cost per prompt; ``None`` where a cost is unknown."""

    guided_flops: float
    sample_flops: float  # one unguided sample
    guided_seconds: float
    sample_seconds: float | None
    seconds_from: str

    @property
    def by_flops(self) -> float:
        return self.guided_flops / self.sample_flops

    @property
    def by_seconds(self) -> float | None:
        return None if not self.sample_seconds else self.guided_seconds / self.sample_seconds


def matched_samples(ratio: float) -> int:
    """The ``num_samples`` closest to a cost ratio (at least one sample)."""
    return max(1, round(ratio))


SUMMARY_KEYS = ("method", "num_prompts", "num_samples", "prompt_ids", "cost_total", "flops")


def read_summary(job_dir: Path) -> dict:
    path = Path(job_dir) / "summary.json"
    if not Path(job_dir).is_dir():
        raise ConfigError(f"{job_dir} is not a directory; give the directory of a finished job")
    if not path.exists():
        raise ConfigError(f"{job_dir} has no summary.json; give the directory of a finished job")
    summary = read_json(path, "a job's summary")
    if "flops" not in summary:
        raise ConfigError(f"{path} has no FLOPs (the job finished before they were recorded); delete it and run "
                          f"the job again: its results are kept and only the summary is rewritten")
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}: not a finished job's summary; delete it and run the "
                          f"job again (its results are kept)")
    return summary


def per_prompt(summary: dict, name: str) -> float:
    return summary["cost_total"][name] / max(summary["num_prompts"], 1)


def unguided_seconds_per_sample(summary: dict, bon_dir: Path | None) -> tuple[float | None, str]:
    """bon's measured seconds per sample and where they come from: a bon job, or the job's
    shared best-of-K cache (its records of the job's prompts)."""
    if bon_dir is not None:
        bon = read_summary(bon_dir)
        if bon["method"] != "bon":
            raise ConfigError(f"--bon {bon_dir} is a {bon['method']} job, not best-of-K; give a method=bon job's "
                              f"directory (or leave --bon out to use the job's shared best-of-K cache)")
        return per_prompt(bon, "sampling_seconds") / bon["num_samples"], f"bon job {bon_dir}"
    cache = Path(summary.get("baseline", {}).get("cache", ""))
    records = read_jsonl(cache / "results.jsonl")
    wanted = set(summary["prompt_ids"])
    seconds = [r["cost"]["seconds"] for r in records if r["id"] in wanted]
    if not seconds:
        return None, "no bon records found (pass --bon <bon job dir>)"
    return sum(seconds) / len(seconds) / summary["num_samples"], f"best-of-K cache {cache}"


def unguided_sample_flops(summary: dict) -> float:
    """FLOPs of one unguided sample of a finished job's setup (its models, widths and sampler mode): as the
    job recorded it (the sampler's own dLLM work per sample, caches and early finished rows included, and
    the scoring of its text), else, for a summary from before it was recorded, its dLLM forwards per sample."""
    if "unguided_sample" in summary["flops"]:
        return summary["flops"]["unguided_sample"]
    sequence = SequenceFlops(**summary["flops"]["per_sequence"])
    steps_per_sample = per_prompt(summary, "dllm_forwards") / summary["num_samples"]
    return sequence.unguided_sample(steps_per_sample)


def match_compute(summary: dict, bon_dir: Path | None = None) -> Match:
    """A finished job's cost per prompt (its ``summary``) against one unguided sample of the same setup."""
    sample_seconds, source = unguided_seconds_per_sample(summary, bon_dir)
    return Match(summary["flops"]["per_prompt"]["total"], unguided_sample_flops(summary),
                 per_prompt(summary, "sampling_seconds"), sample_seconds, source)


def bon_command(job_dir: Path, num_samples: int) -> str:
    """The job's own overrides (``.hydra/overrides.yaml``) with method=bon and the matched num_samples.
    A sweep's job gets a sweep command (``-m`` and its sweep), so the bon job lands beside it."""
    hydra_dir = Path(job_dir) / ".hydra"
    path = hydra_dir / "overrides.yaml"
    overrides = yaml.safe_load(path.read_text()) if path.exists() else []
    kept = [o for o in overrides if o.split("=")[0].lstrip("+~") not in ("method", "num_samples")]
    hydra = yaml.safe_load((hydra_dir / "hydra.yaml").read_text()) if (hydra_dir / "hydra.yaml").exists() else {}
    if (hydra or {}).get("hydra", {}).get("mode") != "MULTIRUN":
        return " ".join(["python -m entrgi.run method=bon", f"num_samples={num_samples}", *kept])
    sweep_dir = Path(job_dir).resolve().parent
    if not any(o.split("=")[0] == "sweep" for o in kept):  # an unnamed sweep: its directory's name is its name
        kept.append(f"sweep={sweep_dir.name}" if sweep_dir.parent.name == "sweeps" else f"hydra.sweep.dir={sweep_dir}")
    return " ".join(["python -m entrgi.run -m method=bon", f"num_samples={num_samples}", *kept])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job_dir", type=Path, help="a finished job's directory (e.g. an entrgi or fk job)")
    parser.add_argument("--bon", type=Path, default=None, help="a bon job on the same device, for seconds")
    args = parser.parse_args(argv)
    try:
        summary = read_summary(args.job_dir)
        match = match_compute(summary, args.bon)
    except ConfigError as error:
        sys.exit(f"entrgi.costs: error: {error}")
    flops = summary["flops"]["per_prompt"]
    print(f"{summary['method']} in {args.job_dir}: {summary['num_prompts']} prompts x {summary['num_samples']} samples")
    print(f"  per prompt: {flops['total']:.3e} FLOPs (dLLM {flops['dllm']:.3e}, reward forward "
          f"{flops['reward_forward']:.3e}, reward backward {flops['reward_backward']:.3e}); "
          f"{match.guided_seconds:.3f} s")
    cost = summary.get("cost_per_prompt", {})
    if "denoising_steps_per_sample" in cost:
        print(f"  per sample: {cost['denoising_steps_per_sample']:.1f} denoising steps, "
              f"{cost['guided_steps_per_sample']:.1f} guided, {cost['dllm_columns'] / summary['num_samples']:.0f} "
              f"dLLM columns computed")
    print(f"  one unguided sample: {match.sample_flops:.3e} FLOPs; " + (
        f"{match.sample_seconds:.3f} s ({match.seconds_from})" if match.sample_seconds else match.seconds_from))
    n = matched_samples(match.by_flops)
    print(f"  best-of-N at matched FLOPs:   N = {match.by_flops:.2f} -> num_samples={n}")
    if match.by_seconds is not None:
        print(f"  best-of-N at matched seconds: N = {match.by_seconds:.2f} -> "
              f"num_samples={matched_samples(match.by_seconds)}")
    print(f"  run: {bon_command(args.job_dir, n)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
