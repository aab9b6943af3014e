"""What the lm-eval backend gives on the tiny stack: writes the table of docs/lm-eval.md.

Builds two local lm-eval tasks from the testbed's held-out prompts (entrgi/assets/tiny-prompts.jsonl,
never trained on) and runs ``entrgi.evaluate`` on them with each method:

- ``tiny_keywords`` (generate_until): "Using the words a and b, say what `f` does."; scored by the
  keyword rule (entrgi.evaluation.judges.keyword_coverage): the share of the two words the answer
  uses, and whether it uses both;
- ``tiny_keywords_mc`` (multiple_choice, through loglikelihood): the function's docstring sentence
  against the next prompt's, as the reply to the same question.

Jobs resume (``entrgi.evaluate``); the report's tables go between the ``harness_tiny`` markers of the docs page.

    nice -n 10 python scripts/harness_tiny.py                       # 32 prompts, base bon aps entrgi fk
    python scripts/harness_tiny.py --num-docs 8 --methods base,entrgi --docs ''   # a quick look, no docs edit
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from entrgi.bookkeeping.storage import read_jsonl, write_atomic  # noqa: E402
from entrgi.evaluate import CONF_DIR, evaluate  # noqa: E402
from entrgi.evaluation.benchmarks import ASSETS  # noqa: E402
from entrgi.reporting.harness import harness_runs, harness_tables  # noqa: E402

GENERATION_TASK = """task: tiny_keywords
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{reference}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 32
process_results: !function keyword_rule.process_results
metric_list:
  - metric: keyword_coverage
    aggregation: mean
    higher_is_better: true
  - metric: all_keywords
    aggregation: mean
    higher_is_better: true
"""
CHOICE_TASK = """task: tiny_keywords_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{[reference, other_reference]}}}}"
doc_to_target: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
KEYWORD_RULE = '''"""The keyword rule of the tiny testbed as an lm-eval metric (written by scripts/harness_tiny.py)."""

from entrgi.evaluation.judges import keyword_coverage


def process_results(doc, results):
    coverage = keyword_coverage(results[0], doc["keywords"])
    return {"keyword_coverage": coverage, "all_keywords": float(coverage == 1.0)}
'''


def write_tasks(folder: Path, num_docs: int) -> None:
    rows = read_jsonl(ASSETS / "tiny-prompts.jsonl")[:num_docs]
    for i, row in enumerate(rows):
        row["other_reference"] = rows[(i + 1) % len(rows)]["reference"]
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "held_out.jsonl"
    write_atomic(data, "".join(json.dumps(r) + "\n" for r in rows))
    write_atomic(folder / "tiny_keywords.yaml", GENERATION_TASK.format(data=data.resolve()))
    write_atomic(folder / "tiny_keywords_mc.yaml", CHOICE_TASK.format(data=data.resolve()))
    write_atomic(folder / "keyword_rule.py", KEYWORD_RULE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-docs", type=int, default=32)
    parser.add_argument("--methods", default="base,bon,aps,entrgi,fk")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "harness_tiny")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "lm-eval.md"), help="'' to leave the docs alone")
    args = parser.parse_args()
    tasks = args.out / f"tasks_{args.num_docs}"
    write_tasks(tasks, args.num_docs)
    seconds = {}
    for method in args.methods.split(","):
        overrides = ["logger=none", f"method={method}", f"seed={args.seed}", f"task_paths=[{tasks.resolve()}]",
                     "tasks=[tiny_keywords,tiny_keywords_mc]", f"baseline.cache_dir={args.out / 'baselines'}"]
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("evaluate", overrides=overrides)
        started = time.time()
        evaluate(cfg, args.out / f"{method}_s{args.seed}_n{args.num_docs}", overrides)
        seconds[method] = time.time() - started
        print(f"{method}: {seconds[method]:.0f} s", flush=True)
    runs = [r for r in harness_runs(args.out) if Path(r["dir"]).name.endswith(f"_s{args.seed}_n{args.num_docs}")
            and r["method"] in args.methods.split(",")]
    table = harness_tables(runs)
    print(table)
    if args.docs:
        command = (f"python scripts/harness_tiny.py --num-docs {args.num_docs} --methods {args.methods} "
                   f"--seed {args.seed}")
        block = (f"<!-- harness_tiny -->\n`{command}`: {args.num_docs} held-out prompts, K = 4, seed {args.seed}, "
                 f"the tiny stack's default sampler (32 tokens, 16 steps), CPU.\n\n{table}\n<!-- /harness_tiny -->")
        docs = Path(args.docs)
        text = docs.read_text()
        new = re.sub(r"<!-- harness_tiny -->.*<!-- /harness_tiny -->", lambda _: block, text, flags=re.S)
        if new == text and block not in text:
            sys.exit(f"no <!-- harness_tiny --> markers in {docs}")
        write_atomic(docs, new)
        print(f"table written to {docs}")


if __name__ == "__main__":
    main()
