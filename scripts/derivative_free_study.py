"""Steering without gradients on the tiny testbed: writes the derivative-free section of docs/results-tiny.md.

Every method at EntRGi's FLOPs per prompt (K = 4; docs/cost-model.md), on the held-out tiny prompts,
paired prompt by prompt with best-of-N at that cost:

- guided by the tiny reward model (judged by the keyword judge and ROUGE-L, neither of which it sees):
  ``entrgi`` (K = 4), ``bon_matched`` (best-of-N), ``fk_matched`` (N particles), ``svdd_matched``
  (K = 4, ``--svdd-candidates`` candidates every ``--svdd-every`` steps), ``rws_matched`` (N samples);
- guided by the keyword rule itself (``reward=keywords``, a scorer: no FLOPs of its own), judged by
  ROUGE-L against the reference, which it does not see: ``bon_matched``, ``fk_matched``, ``rws_matched``
  with N samples at the same dLLM FLOPs, and ``svdd_matched`` with the candidates that fill them.

Each N is computed from the first seed's EntRGi job and the models' per-sequence FLOPs, so the
matched jobs cost what EntRGi costs (the table shows each job's measured counts). Jobs run with
``entrgi.run.run`` and resume; only the block between the ``derivative-free`` markers is rewritten.

    nice -n 10 python scripts/derivative_free_study.py --seeds 0 1 2
    python scripts/derivative_free_study.py --seeds 0 --num-prompts 8      # a quick look
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import torch  # noqa: E402
from cost_study import cost_rows, run_job, study_parser, tables, write_block  # noqa: E402

from entrgi.costs import read_summary  # noqa: E402
from entrgi.evaluation.judges import make_judge  # noqa: E402

START, END = "<!-- derivative-free:start -->", "<!-- derivative-free:end -->"
STEPS = 16  # the tiny model's denoising steps (conf/model/tiny.yaml), every one of which commits


def completed_steps(every: int) -> int:
    """SVDD's steered steps that leave masks to complete (each costs M dLLM forwards per sample)."""
    return len(range(0, STEPS, every)) - ((STEPS - 1) % every == 0)


def matched(budget: float, per_sequence: dict, candidates: int, every: int) -> dict[str, int]:
    """N of best-of-N, FK and RWS, and SVDD's K, whose FLOPs per prompt come closest to ``budget``."""
    dllm, text = per_sequence["dllm_forward"], per_sequence["reward_text_forward"]
    plain = STEPS * dllm + text  # one unguided sample: its forwards and its final score
    fk = plain + text * STEPS / 4  # + a scored estimate every 4th step (FK's default resample_every)
    rws = plain + text * STEPS  # + a scored estimate every step
    svdd = plain + candidates * (completed_steps(every) * dllm + len(range(0, STEPS, every)) * text)
    return {name: max(1, round(budget / cost)) for name, cost in
            (("bon", plain), ("fk", fk), ("rws", rws), ("svdd", svdd))}


def main() -> None:
    parser = study_parser(__doc__.splitlines()[0], "derivative-free-study")
    parser.add_argument("--svdd-candidates", type=int, default=3, help="SVDD's M with the reward model")
    parser.add_argument("--svdd-every", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    common = [f"benchmark.num_prompts={args.num_prompts}", "batch_size=8", "eval_reward=keywords", "logger=none",
              f"baseline.cache_dir={args.out / 'baselines'}"]
    svdd = [f"method.num_candidates={args.svdd_candidates}", f"method.every={args.svdd_every}"]
    model_dir, rule_dir = args.out / "reward-model", args.out / "keyword-rule"
    records, rule_records = {}, {}
    for label in ("bon", "entrgi"):
        for seed in args.seeds:
            records[label, seed] = run_job(model_dir / f"{label}_s{seed}", [f"method={label}", f"seed={seed}", *common])
    entrgi = read_summary(model_dir / f"entrgi_s{args.seeds[0]}")
    budget, per_sequence = entrgi["flops"]["per_prompt"]["total"], entrgi["flops"]["per_sequence"]
    n = matched(budget, per_sequence, args.svdd_candidates, args.svdd_every)
    jobs = {"bon_matched": ["method=bon", f"num_samples={n['bon']}"],
            "fk_matched": ["method=fk", f"num_samples={n['fk']}"],
            "svdd_matched": ["method=svdd", *svdd, f"num_samples={n['svdd']}"],
            "rws_matched": ["method=rws", f"num_samples={n['rws']}"]}
    for label, overrides in jobs.items():
        for seed in args.seeds:
            records[label, seed] = run_job(model_dir / f"{label}_s{seed}", [*overrides, f"seed={seed}", *common])

    # the rule costs no FLOPs: every method gets the budget in dLLM forwards; SVDD's candidates fill it at K = 4
    rule = matched(budget, {"dllm_forward": per_sequence["dllm_forward"], "reward_text_forward": 0.0}, 1, 1)
    rule_candidates = max(1, round((budget / (4 * per_sequence["dllm_forward"]) - STEPS)
                                   / completed_steps(args.svdd_every)))
    rule_jobs = {"bon": ["method=bon"], "bon_matched": ["method=bon", f"num_samples={rule['bon']}"],
                 "fk_matched": ["method=fk", f"num_samples={rule['bon']}"],
                 "svdd_matched": ["method=svdd", f"method.num_candidates={rule_candidates}",
                                  f"method.every={args.svdd_every}"],
                 "rws_matched": ["method=rws", f"num_samples={rule['bon']}"]}
    rule_common = ["reward=keywords", *common[:2], "eval_reward=lexical", *common[3:]]
    for label, overrides in rule_jobs.items():
        for seed in args.seeds:
            rule_records[label, seed] = run_job(rule_dir / f"{label}_s{seed}",
                                                [*overrides, f"seed={seed}", *rule_common])

    keywords, lexical = make_judge({"type": "keywords", "name": "keywords"}), make_judge({"type": "lexical"})
    labels = ["bon", "entrgi", "bon_matched", "fk_matched", "svdd_matched", "rws_matched"]
    at_cost = {**records, **{("bon", s): records["bon_matched", s] for s in args.seeds}}
    rule_labels = ["bon", "bon_matched", "fk_matched", "svdd_matched", "rws_matched"]
    rule_at_cost = {**rule_records, **{("bon", s): rule_records["bon_matched", s] for s in args.seeds}}
    per_seed = len(next(iter(records.values())))
    distinct = len({i for (label, _), by_id in records.items() if label == "bon" for i in by_id})
    prompts = (f"{per_seed} held-out prompts" if distinct == per_seed else
               f"{per_seed} held-out prompts per seed (each seed draws its own; {distinct} distinct in all)")
    setting = (f"Setting: {prompts} x seeds {args.seeds}, gen_length 32, steps 16, at EntRGi's "
               f"FLOPs per prompt (K = 4, {budget:.3g} FLOPs). Guided by the tiny reward model: best-of-N with "
               f"N = {n['bon']}, FK with N = {n['fk']} particles (potential diff, lambda 1, resampling every 4 "
               f"steps), SVDD with K = {n['svdd']}, M = {args.svdd_candidates} candidates every {args.svdd_every} "
               f"steps (alpha 0), RWS with N = {n['rws']} (gamma 1). Guided by the keyword rule (no FLOPs of its "
               f"own, so the budget is all dLLM forwards): N = {rule['bon']} for best-of-N, FK and RWS, SVDD with "
               f"K = 4 and M = {rule_candidates} every {args.svdd_every} steps.")
    note = ("Mean ± standard error over prompts (each prompt's value averaged over the seeds that drew it first); "
            "win-rates "
            "with bootstrap 95% intervals over prompts. In the tables against best-of-N at EntRGi's cost, that "
            "best-of-N is the `bon` row.")
    block = "\n".join([
        setting, "", f"Command: `python scripts/derivative_free_study.py {' '.join(sys.argv[1:])}`", "",
        "**Guided by the tiny reward model.** Cost per prompt, relative to bon at K = 4:", "",
        *cost_rows(model_dir, labels, args.seeds, records), "",
        f"Against best-of-N at EntRGi's cost (N = {n['bon']}):", "",
        *tables(at_cost, [label for label in labels if label != "bon_matched"], args.seeds, [keywords, lexical]), "",
        ("**Guided by the keyword rule itself** (its top-1 reward is the keyword score; ROUGE-L is held out). "
         "Cost per prompt, relative to keyword-guided bon at K = 4:"), "",
        *cost_rows(rule_dir, rule_labels, args.seeds, rule_records), "",
        f"Against keyword-guided best-of-N at the same cost (N = {rule['bon']}):", "",
        *tables(rule_at_cost, [label for label in rule_labels if label != "bon_matched"], args.seeds, [lexical]), "",
        note])
    write_block(args.results, block, START, END)
    print(block)
    print(f"wrote {args.results} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
