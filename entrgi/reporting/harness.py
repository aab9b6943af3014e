"""The report of ``entrgi.evaluate`` jobs: tasks x methods with lm-eval's standard errors, and costs per task.

``python -m entrgi.report <dir>`` writes it when ``<dir>`` holds evaluation jobs (their
``summary.json`` has ``kind: lm-eval``). Reads only the jobs' files: lm-eval need not be installed.
"""

from __future__ import annotations

from pathlib import Path

from entrgi.bookkeeping.storage import read_json, write_atomic
from entrgi.errors import ConfigError
from entrgi.reporting.tables import markdown_table


def lm_eval_metrics(results: dict) -> dict[str, dict[str, dict]]:
    """lm-eval's ``results`` section as ``{task: {metric: {"value", "stderr"}}}``; a metric under a filter
    other than ``none`` is named ``metric,filter`` (lm-eval's keys are ``metric,filter`` and
    ``metric_stderr,filter``; a stderr lm-eval could not compute is None)."""
    out: dict[str, dict[str, dict]] = {}
    for task, values in results.items():
        for key, value in values.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filtered = key.split(",", 1)
            stderr = values.get(f"{metric}_stderr,{filtered}")
            name = metric if filtered == "none" else key
            out.setdefault(task, {})[name] = {"value": float(value),
                                              "stderr": float(stderr) if isinstance(stderr, (int, float)) else None}
    return out


def harness_runs(root: Path) -> list[dict]:
    """The finished evaluation jobs under ``root`` (itself one, or a folder of them), with their directory."""
    runs = []
    for path in sorted({Path(root) / "summary.json", *Path(root).glob("*/summary.json")}):
        if path.exists():
            try:
                summary = read_json(path, "a job's summary")
            except ConfigError:  # not readable: the sweep report names it, whichever kind of job it was
                continue
            if isinstance(summary, dict) and summary.get("kind") == "lm-eval":
                runs.append({**summary, "dir": str(path.parent)})
    return runs


def labels(runs: list[dict]) -> list[str]:
    """A column name per job: the method, plus what else differs between the jobs (model, reward, seed)."""
    varying = [key for key in ("model", "reward", "seed") if len({str(r[key]) for r in runs}) > 1]
    return [" ".join([r["method"], *(f"{key}={r[key]}" for key in varying)]) for r in runs]


def harness_tables(runs: list[dict]) -> str:
    """Markdown: the metrics table (value ± lm-eval's stderr) and the costs per request, tasks x methods."""
    names = labels(runs)
    rows = []
    metric_rows = dict.fromkeys((task, metric) for r in runs for task, ms in r["metrics"].items() for metric in ms)
    for task, metric in metric_rows:
        cells = []
        for r in runs:
            stat = r["metrics"].get(task, {}).get(metric)
            if stat is None:
                cells.append("-")
            else:
                cells.append(f"{stat['value']:.3f}" + ("" if stat["stderr"] is None else f" ± {stat['stderr']:.3f}"))
        rows.append([task, metric, *cells])
    cost_rows = []
    for task in dict.fromkeys(task for r in runs for task in r["costs"]):
        cells = []
        for r in runs:
            cost = r["costs"].get(task)
            if not cost:
                cells.append("-")
                continue
            n = cost["requests"]
            reward_passes = (cost["reward_forwards"] + cost["reward_backwards"]) / n
            cells.append(f"{cost['dllm_forwards'] / n:.0f} / {reward_passes:.0f} / {cost['seconds'] / n:.2f}")
        cost_rows.append([task, *cells])
    return "\n\n".join([
        "Metrics (lm-eval's value ± its standard error):", markdown_table(["task", "metric", *names], rows),
        "Cost per request (dLLM forwards / reward forward+backward passes / seconds):",
        markdown_table(["task", *names], cost_rows)])


def write_harness_report(root: Path, out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = harness_runs(root)
    text = "\n".join([f"# lm-eval report: {root}", "", harness_tables(runs), "",
                      "Jobs: " + ", ".join(f"{name} ({Path(r['dir']).name})" for name, r in zip(labels(runs), runs)),
                      ""])
    write_atomic(out / "report.md", text)
    return out / "report.md"
