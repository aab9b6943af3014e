"""The sweep report: gather a sweep's settings once (:class:`SweepTables`), then write each section of
``report.md`` from them in the order of :data:`SECTIONS`, the plots after them, and ``table.csv`` and
``results.csv`` from the numbers the sections recorded."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from entrgi.bookkeeping.storage import write_atomic
from entrgi.bookkeeping.sweep_record import read_jobs
from entrgi.reporting.cost_vs_quality import CostPoint, cost_points, cost_relative_table
from entrgi.reporting.loading import (
    GUIDE, Setting, _flatten, cell_key, cell_label, check_baselines, job_dirs, label_variants, load_jobs,
    load_judge, merge_shards, missing_from_grid, recorded_judge, rejudge)
from entrgi.reporting.plots import plot_cost, plot_denoising, plot_relaxation, plot_rewards, plot_win_rates
from entrgi.reporting.statistics import JUDGE_COLUMNS, judge_stats, over_seeds, row_order, verdict
from entrgi.reporting.tables import fmt, markdown_table, row_name, seeds_note


INNER_STEPS = ("method.guidance.inner_steps", "method.inner_steps", "guidance.inner_steps")  # M, as configs wrote it


def _first(flat: dict, *keys: str):
    """The value of the first of ``keys`` that a flattened config has (JSON-encoded by ``_flatten``)."""
    return next((json.loads(flat[k]) for k in keys if k in flat), None)


@dataclass
class SweepTables:
    """What every section reads: the sweep's settings by cell ((method, variant), benchmark), the rows and
    benchmarks in table order, the held-out judges, the seeds each cell should have, and each cell's
    judge statistics. Sections append the numbers they print to ``long_rows`` (``results.csv``)."""

    sweep_dir: Path
    settings: list[Setting]
    grid: list[dict] | None
    rejudged: set[str]  # judges that scored every stored answer (--judge)
    problems: list[str]
    cells: dict[tuple, list[Setting]] = field(default_factory=dict)
    rows: list[tuple[str, str]] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    expected: dict[tuple, list[int]] = field(default_factory=dict)
    judged: dict[tuple, dict] = field(default_factory=dict)  # (row, benchmark, judge) -> judge_stats
    costs: dict[str, list[CostPoint]] = field(default_factory=dict)  # benchmark -> its cost points
    cost_judges: dict[str, str] = field(default_factory=dict)  # benchmark -> the judge of its win-rates
    long_rows: list[list] = field(default_factory=list)

    @property
    def judges(self) -> list[str]:
        return [GUIDE, *self.held_out]

    def seeds_of(self, row, benchmark) -> tuple[list[int], list[int]]:
        """The seeds a cell has, and those it should have."""
        return [s.seed for s in self.cells.get((row, benchmark), [])], self.expected.get((row, benchmark), [])

    def record_stat(self, row, benchmark, metric, stat) -> None:
        if stat:
            have, want = self.seeds_of(row, benchmark)
            self.long_rows.append([row[0], row[1], benchmark, metric, stat.get("mean", stat.get("rate")),
                                   stat.get("stderr", ""), len(have), len(want), stat.get("low", ""),
                                   stat.get("high", "")])


def tabulate(sweep_dir: Path, settings: list[Setting], grid: list[dict] | None, rejudged: set[str],
             problems: list[str]) -> SweepTables:
    """Group the settings into cells and compute what the sections share; names (in ``problems``) each
    seed a cell lacks that the sweep's record does not already name."""
    sweep = SweepTables(sweep_dir, settings, grid, rejudged, problems)
    cells: dict[tuple, list[Setting]] = defaultdict(list)
    for setting in settings:
        cells[((setting.method, setting.variant), setting.benchmark)].append(setting)
    for cell in cells.values():
        cell.sort(key=lambda s: s.seed)
    sweep.cells = cells
    sweep.rows = row_order({row for row, _ in cells})
    sweep.benchmarks = sorted({b for _, b in cells})
    sweep.held_out = sorted({recorded_judge(r) for s in settings for r in s.records[:1]} - {None} | rejudged)

    # the seeds each cell should have: those its recorded jobs ran, and those of its row and column
    recorded_seeds: dict[str, set[int]] = defaultdict(set)
    for job in grid or []:
        recorded_seeds[cell_key(job["settings"])].add(job["settings"]["seed"])
    problems_seen = "\n".join(problems)
    for (row, benchmark), cell in cells.items():
        seeds = recorded_seeds[cell_key(cell[0].config)] | {s.seed for s in cell}
        seeds |= {s.seed for (r, b), c in cells.items() if r == row or b == benchmark for s in c}
        sweep.expected[(row, benchmark)] = sorted(seeds)
        for seed in sorted(seeds - {s.seed for s in cell}) if grid is None else []:  # else named by the record
            if cell_label(row[0], benchmark, seed) not in problems_seen:
                problems.append(f"{cell_label(row_name(row), benchmark, seed)}: no job directory found, though other "
                                f"cells of the sweep have seed {seed} -- launch it (the sweep has no sweep.json "
                                "naming its jobs)")
    sweep.judged = {(row, benchmark, judge): judge_stats(cell, judge)  # seeded 10k bootstraps: once per cell, judge
                    for (row, benchmark), cell in cells.items() for judge in sweep.judges}
    return sweep


def header_text(sweep: SweepTables) -> str:
    settings, launched = sweep.settings, len(sweep.grid) if sweep.grid is not None else None
    flat = _flatten(settings[0].config)
    guided = next((f for f in map(_flatten, (s.config for s in settings))  # the first with guidance settings
                   if _first(f, *INNER_STEPS) is not None), flat)
    prompts = {s.benchmark: len(s.records) for s in settings}
    jobs = sum(len(s.dirs) for s in settings)
    of_grid = f" (the sweep's grid has {launched})" if launched is not None else ""
    text = (f"# Sweep report: {sweep.sweep_dir}\n\n{len(settings)} setting(s) from {jobs} job(s){of_grid}. "
            f"Model `{_first(flat, 'model.name')}`, guiding reward `{_first(flat, 'reward.name')}`, "
            f"K={_first(flat, 'num_samples')}, L={_first(flat, 'sampler.gen_length')}, "
            f"T={_first(flat, 'sampler.steps')}, "
            f"M={_first(guided, *INNER_STEPS)}, "
            f"eta={_first(guided, 'method.guidance.lr', 'method.lr', 'guidance.lr')}; "
            f"prompts per seed {', '.join(f'{n} ({b})' for b, n in sorted(prompts.items()))}; seeds "
            f"{', '.join(map(str, sorted({s.seed for s in settings})))}.\n\n"
            "In the first two tables, cells are mean ± standard error over seeds of the per-seed mean over prompts")
    if any(len(c) == 1 for c in sweep.cells.values()):
        text += " († one seed: standard error over its prompts)"
    return text + ". A cell built from fewer seeds than the sweep ran says so: [n of m seeds: the seeds it has]."


def reward_tables(sweep: SweepTables) -> list[str]:
    """The paper's tables: top-1 and mean@K guiding reward, mean ± standard error over seeds."""
    sections = []
    for metric, title, part in [("top1_reward", "Top-1 reward (the answer's reward by the guiding reward model)",
                                 lambda s: s.top1),
                                ("mean_reward", "Mean@K reward", lambda s: s.mean_at_k)]:
        table = []
        for row in sweep.rows:
            line = [row_name(row)]
            for benchmark in sweep.benchmarks:
                cell = sweep.cells.get((row, benchmark))
                stat = over_seeds(cell, lambda s, r, part=part: part(s.scores(GUIDE, r))) if cell else None
                sweep.record_stat(row, benchmark, metric, stat)
                line.append(fmt(stat) + seeds_note(*sweep.seeds_of(row, benchmark)) if cell else "—")
            table.append(line)
        sections.append(f"## {title}\n\n" + markdown_table(["method", *sweep.benchmarks], table))
    return sections


def _weighing_note(sweep: SweepTables) -> str:
    """Why a paired table's means (bon's top-1 among them) differ from the first tables', where they do."""
    if not any(len({frozenset(r.id for r in s.records) for s in cell}) > 1 for cell in sweep.cells.values()):
        return ""
    return (" The seeds draw different prompts, so these means, which weigh each prompt once, differ from the "
            "first tables' means over seeds, which weigh each seed once (bon's top-1 as well).")


def judge_tables(sweep: SweepTables) -> list[str]:
    """Per judge: every method paired with best-of-K prompt by prompt, one table per benchmark."""
    sections = []
    for judge in sweep.judges:
        title = ("Judged by the guiding reward model" if judge == GUIDE
                 else f"Judged by `{judge}` (held out: guidance never sees it)")
        parts = [f"## {title}\n\nPaired with best-of-K prompt by prompt (same prompts and seeds): mean ± standard "
                 "error over prompts, each prompt averaged over its seeds first, [normal 95% interval]; win-rate: "
                 "ties count half, [95% bootstrap interval over prompts]." + _weighing_note(sweep)
                 + ("" if judge == GUIDE or judge in sweep.rejudged else
                    f" Mean@K needs every answer scored: `--judge {judge}`.")]
        for benchmark in sweep.benchmarks:
            table, verdicts = [], []
            for row in sweep.rows:
                if (row, benchmark) not in sweep.cells:
                    continue
                stats = sweep.judged[(row, benchmark, judge)]
                if not any(stats.values()):
                    continue
                for metric, stat in stats.items():
                    sweep.record_stat(row, benchmark, f"{judge}/{metric}", stat)
                have, want = sweep.seeds_of(row, benchmark)
                table.append([row_name(row), *(fmt(stats[m], signed=m == "gain", interval=m == "gain")
                                               for m, *_ in JUDGE_COLUMNS),
                              fmt(stats["win_rate"]), ", ".join(map(str, have)) + seeds_note(have, want)])
                verdicts += filter(None, [verdict(row_name(row), stats)])
            if not table:
                continue
            header = ["method", *(h for _, h, *_ in JUDGE_COLUMNS), "top-1 win-rate over bon [95% CI]", "seeds"]
            parts.append((f"### {benchmark}\n\n" if len(sweep.benchmarks) > 1 else "") + markdown_table(header, table)
                         + ("\n\n" + "\n".join(verdicts) if verdicts else ""))
        sections.append("\n\n".join(parts))
    return sections


def cost_per_prompt_table(sweep: SweepTables) -> list[str]:
    """Mean per prompt of each cost the results record, and the peak memory of any job, per row."""
    cost_table, cost_keys = [], sorted({k for s in sweep.settings for r in s.records for k in r.cost})
    for row in sweep.rows:
        cell_settings = [s for b in sweep.benchmarks for s in sweep.cells.get((row, b), [])]
        records = [r for s in cell_settings for r in s.records]
        peaks = [summary.get("cost_total", {}).get("peak_memory_bytes")
                 for s in cell_settings for summary in s.summaries]
        per_prompt_cost = [sum(r.cost.get(k, 0) for r in records) / len(records) for k in cost_keys]
        known_peaks = [p for p in peaks if p is not None]
        cost_table.append([row_name(row), *(f"{v:.2f}" if v < 100 else f"{v:.0f}" for v in per_prompt_cost),
                           f"{max(known_peaks) / 2**20:.0f}" if known_peaks else "—"])
    return ["## Cost per prompt\n\nMean per prompt of each cost a result records (model evaluations count "
            "sequences, K samples each; best-of-K's are those of its shared samples). Peak memory is the "
            "largest of any job (GPU allocated, else resident set).\n\n" + markdown_table(
                ["method", *(k.replace("_", " ") for k in cost_keys), "peak MiB"], cost_table)]


def cost_relative_to_bon(sweep: SweepTables) -> list[str]:
    """FLOPs and seconds per prompt relative to best-of-K (none without FLOPs); keeps the cost points
    for the cost plots."""
    for benchmark in sweep.benchmarks:
        sweep.cost_judges[benchmark], sweep.costs[benchmark] = cost_points(
            sweep.cells, sweep.rows, benchmark, sweep.held_out, sweep.judged)
        for point in sweep.costs[benchmark]:
            for metric, value in [*((f"flops_{k}", point.flops[k]) for k in ("dllm", "reward_forward",
                                                                              "reward_backward", "total")),
                                  ("relative_flops", point.relative_flops),
                                  ("relative_seconds", point.relative_seconds)]:
                sweep.record_stat(point.row, benchmark, f"cost/{metric}",
                                  {"mean": value} if value is not None else None)
            sweep.record_stat(point.row, benchmark, "cost/seconds", point.seconds)
    return list(filter(None, [cost_relative_table(sweep.costs)]))


SECTIONS = [reward_tables, judge_tables, cost_per_prompt_table, cost_relative_to_bon]  # in report order


def plots(sweep: SweepTables, out_dir: Path) -> list[str]:
    """The file names of the plots written into ``out_dir``, in report order."""
    cells, rows, benchmarks = sweep.cells, sweep.rows, sweep.benchmarks
    images = [plot_rewards(cells, rows, benchmarks, out_dir), plot_denoising(cells, rows, benchmarks, out_dir),
              plot_win_rates(cells, rows, benchmarks, sweep.judges, sweep.judged, out_dir),
              *(plot_cost(b, sweep.cost_judges[b], sweep.costs[b], out_dir) for b in benchmarks),
              plot_relaxation(cells, rows, benchmarks, out_dir)]
    return [name for name in images if name]


def write_csvs(sweep: SweepTables, out_dir: Path) -> None:
    """``table.csv`` (the paper's layout, top-1 reward: one row per method, mean, stderr and seeds per
    benchmark) and ``results.csv`` (every number the sections recorded, in long form)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", *[f"{b} {part}" for b in sweep.benchmarks for part in ("mean", "stderr", "seeds")]])
    for row in sweep.rows:
        line = [row_name(row)]
        for benchmark in sweep.benchmarks:
            stat = next((r for r in sweep.long_rows if r[:4] == [row[0], row[1], benchmark, "top1_reward"]), None)
            line += [stat[4], stat[5], stat[6]] if stat else ["", "", ""]
        writer.writerow(line)
    write_atomic(out_dir / "table.csv", buffer.getvalue())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "variant", "benchmark", "metric", "value", "stderr", "seeds", "seeds_expected",
                     "low95", "high95"])
    writer.writerows(sweep.long_rows)
    write_atomic(out_dir / "results.csv", buffer.getvalue())


def left_out(problems: list[str]) -> str:
    return "\n## Left out\n\n" + "".join(f"- {p}\n" for p in problems) if problems else ""


def build(sweep_dir: Path, out_dir: Path, judges: list[str] = ()) -> tuple[str, list[str]]:
    """Write the report; returns the Markdown and the list of what was left out. ``judges``: names of
    ``conf/eval_reward`` configs that score every stored answer."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory; pass a sweep directory (outputs/sweeps/<name>)")
    rejudges = [load_judge(name) for name in judges]
    found = job_dirs(sweep_dir)
    grid = read_jobs(sweep_dir)
    problems = missing_from_grid(grid, found, sweep_dir) if grid is not None else []
    jobs, job_problems = load_jobs(sweep_dir, found)
    settings, shard_problems = merge_shards(jobs, sweep_dir)
    problems += job_problems + shard_problems
    label_variants(settings)
    problems += check_baselines(settings)
    out_dir.mkdir(parents=True, exist_ok=True)

    if not settings:
        text = f"# Sweep report: {sweep_dir}\n\nNo finished job to report.\n" + left_out(problems)
        write_atomic(out_dir / "report.md", text)
        return text, problems or [f"{sweep_dir} holds no job results (no summary.json below it)"]
    for judge in rejudges:
        rejudge(settings, judge)

    sweep = tabulate(sweep_dir, settings, grid, {judge.name for judge in rejudges}, problems)
    sections = [text for section in SECTIONS for text in section(sweep)]
    images = [f"![{name}]({name})" for name in plots(sweep, out_dir)]
    text = "\n\n".join([header_text(sweep), *sections, *images]) + "\n" + left_out(problems)
    write_atomic(out_dir / "report.md", text)
    write_csvs(sweep, out_dir)
    return text, problems
