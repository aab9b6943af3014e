"""The reports ``python -m entrgi.report`` writes (see entrgi/report.py).

loading          a sweep's jobs, merged into settings, with every judge's scores
statistics       means over seeds, paired per-prompt comparisons with best-of-K, the judge columns
tables           Markdown tables and formatted numbers (shared with the post-training report)
cost_vs_quality  FLOPs and seconds per prompt relative to best-of-K, beside what they bought
plots            the sweep report's figures
sweep            the sweep report: its sections in order, report.md, table.csv, results.csv
training         the post-training report: the last held-out evaluation and the learning curves
harness          the lm-eval report (python -m entrgi.evaluate jobs): tasks x methods with standard errors
"""
