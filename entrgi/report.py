"""Turn a sweep directory into the paper's tables, paired comparisons with best-of-K, and plots.

    python -m entrgi.report outputs/sweeps/<name>                  # writes into <sweep>/report/
    python -m entrgi.report outputs/sweeps/<name> --out DIR
    python -m entrgi.report outputs/sweeps/<name> --judge lexical  # also score every answer with a judge

Reads every job directory under the sweep (any depth), merges the shards of a setting, and
writes ``report.md`` (tables and plots), ``table.csv`` (method x benchmark, top-1 reward),
``results.csv`` (every number in long form) and PNG plots. Besides the paper's tables (mean and
standard error over seeds) there is one table per judge -- the guiding reward model and each
held-out judge -- pairing every method with best-of-K prompt by prompt: top-1 and mean@K scores,
bon's top-1 on the same prompts, the gain over it and the win-rate, with 95% intervals over
prompts (each prompt's value averaged over its seeds first). Then cost: per prompt, and, where the
summaries record FLOPs, FLOPs and seconds per prompt relative to best-of-K of the same setup, with a
plot of top-1 reward and win-rate against both; and, for runs with ``diagnostics.relaxation=true``,
the relaxation's fidelity over the denoising steps. ``--judge NAME`` (a config of
``conf/eval_reward``) scores every stored answer with that judge after the fact, so a judge the
sweep did not run, and the judge's mean over all K answers, are reported too.

Whatever is unfinished or inconsistent is left out, named under "Left out" and on stderr, and the
rest is still reported: a job of the sweep's grid (``sweep.json``, written by the resuming sweeper)
that left no results, a job without a summary, a results file cut short, a missing shard, a baseline
computed with other settings. A cell built from fewer seeds than the sweep ran says so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from entrgi.errors import ConfigError
from entrgi.reporting.sweep import build
from entrgi.reporting.training import training_runs, write_training_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m entrgi.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory, e.g. outputs/sweeps/<name>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: <sweep_dir>/report)")
    parser.add_argument("--judge", action="append", default=[], metavar="NAME",
                        help="also score every stored answer with this judge (a conf/eval_reward config: "
                             "keywords, lexical, skywork_8b); repeatable")
    args = parser.parse_args(argv)
    if training_runs(args.sweep_dir):  # post-training runs (python -m entrgi.train): their own report
        print(f"report written to {write_training_report(args.sweep_dir, args.out or args.sweep_dir / 'report')}")
        return 0
    from entrgi.reporting.harness import harness_runs, write_harness_report

    if harness_runs(args.sweep_dir):  # lm-eval jobs (python -m entrgi.evaluate): tasks x methods
        print(f"report written to {write_harness_report(args.sweep_dir, args.out or args.sweep_dir / 'report')}")
        return 0
    out = args.out or args.sweep_dir / "report"
    try:
        text, problems = build(args.sweep_dir, out, args.judge)
    except (FileNotFoundError, ConfigError) as error:
        print(f"entrgi.report: error: {error}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"entrgi.report: left out: {problem}", file=sys.stderr)
    if "No finished job" in text:
        print(f"entrgi.report: error: no finished job in {args.sweep_dir}; nothing to report", file=sys.stderr)
        return 1
    print(f"report written to {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

