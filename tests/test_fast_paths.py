"""The fast paths of a guided step give the samples of the reference paths, and the step options work."""

import pytest
import torch
from conftest import make_guide

from entrgi.errors import ConfigError
from entrgi.sampling import fastpaths, guidance, sampler
from entrgi.sampling.guidance import first_eos_keep, guided_steps, relaxed_embeddings
from entrgi.sampling.rng import RowRandom, row_key
from entrgi.sampling.sampler import SamplerConfig, generate, nucleus_filter, sample_nucleus, sorted_nucleus_filter
from entrgi.sampling.schedules import make_schedule

PROMPTS = ["What does `os.path.join` do?", "What does `math.sqrt` do?"]
ROWS = [p for p in PROMPTS for _ in range(2)]  # two samples of each prompt
KEYS = [row_key(0, p, k) for p in PROMPTS for k in range(2)]
CFG = SamplerConfig(gen_length=12, steps=4)


def guided_generate(tiny_stack, cache_prefix=True, steps=None, lr=0.5, schedule=None):
    guide = make_guide(tiny_stack, ROWS, CFG, schedule, cache_prefix, inner_steps=2, lr=lr, steps=steps)
    dllm = tiny_stack[0]
    return generate(dllm, dllm.encode_prompts(ROWS), KEYS, CFG, guide)


def test_prefix_cache_and_fused_adam_give_the_reference_samples(tiny_stack, monkeypatch):
    fast = guided_generate(tiny_stack, cache_prefix=True)

    reference_adam = torch.optim.Adam

    def unfused_adam(params, **kwargs):
        kwargs.pop("fused", None)
        return reference_adam(params, foreach=False, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", unfused_adam)
    reference = guided_generate(tiny_stack, cache_prefix=False)
    assert torch.equal(fast.tokens, reference.tokens)
    assert len(fast.trace) == len(reference.trace)
    for a, b in zip(fast.trace, reference.trace):
        torch.testing.assert_close(a["guided_reward"], b["guided_reward"], atol=1e-5, rtol=1e-5)


def test_guidance_changes_the_samples(tiny_stack):
    # the test above would pass vacuously if guidance did nothing
    guided = guided_generate(tiny_stack, lr=5.0)
    unguided = guided_generate(tiny_stack, steps=set())
    assert not torch.equal(guided.tokens, unguided.tokens)


def test_guided_steps_every_and_window():
    assert guided_steps(8) is None
    assert guided_steps(8, every=2) == {0, 2, 4, 6}
    assert guided_steps(8, window=(0, 0.5)) == {0, 1, 2, 3}
    assert guided_steps(8, every=3, window=(0.25, 1)) == {3, 6}
    with pytest.raises(ConfigError, match="method.every"):
        guided_steps(8, every=0)
    with pytest.raises(ConfigError, match="method.window"):
        guided_steps(8, window=(0.5, 0.2))


def test_only_the_chosen_steps_are_guided(tiny_stack):
    out = guided_generate(tiny_stack, steps=guided_steps(CFG.steps, every=2))
    guided = [t["step"] for t in out.trace if "guided_reward" in t]
    assert guided and all(step % 2 == 0 for step in guided)
    assert len(guided) < len(out.trace)


def logit_rows(kind: str, rows: int, V: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(V)
    if kind == "flat":  # a random-weight model
        x = torch.randn(rows, V, generator=g) * 0.5
    elif kind == "peaked":
        x = torch.randn(rows, V, generator=g) * 4
    elif kind == "zipf":
        ranks = torch.rand(rows, V, generator=g).argsort(-1) + 1
        x = -1.1 * ranks.float().log() + 0.3 * torch.randn(rows, V, generator=g)
    elif kind == "bf16":  # few distinct values: ties everywhere
        x = (torch.randn(rows, V, generator=g) * 3).bfloat16().float()
    elif kind == "masked":  # -inf entries, as the mask token and a top-k filter leave
        x = torch.randn(rows, V, generator=g) * 3
        x[:, ::3] = float("-inf")
    else:  # uniform
        x = torch.zeros(rows, V)
    return x / 0.7


@pytest.fixture
def sorted_rows(monkeypatch):
    """How many rows each call of nucleus_filter handed to its fallback, the full sort."""
    counts = []

    def counted_sort(x, top_p):
        counts.append(x.shape[0])
        return sorted_nucleus_filter(x, top_p)

    monkeypatch.setattr(sampler, "sorted_nucleus_filter", counted_sort)
    return counts


@pytest.mark.parametrize("V", [7, 300, 4096])
@pytest.mark.parametrize("kind", ["flat", "peaked", "zipf", "bf16", "masked", "uniform"])
def test_nucleus_without_a_sort_keeps_the_tokens_the_sort_keeps(kind, V, sorted_rows):
    rows = 50
    x = logit_rows(kind, rows, V)
    for top_p in (0.95, 0.5, 0.999):
        assert torch.equal(nucleus_filter(x, top_p), sorted_nucleus_filter(x, top_p)), top_p
    if kind != "uniform" and V > 7:  # the sort is the rare fallback, not the rule (bf16's ties included)
        assert sum(sorted_rows) <= 0.02 * 3 * rows, sorted_rows


def test_a_tie_at_the_nucleus_boundary_is_decided_by_token_index_without_the_sort(sorted_rows):
    # 0.5 + one of the two 0.25s reaches 0.6: the one with the lower token index stays, in both paths
    x = torch.tensor([[0.25, 0.5, 0.25]]).log().expand(4, 3).contiguous()
    kept = torch.isfinite(nucleus_filter(x, 0.6))
    assert sorted_rows == []  # no row went to the sort
    assert kept.tolist() == [[True, True, False]] * 4
    assert torch.equal(kept, torch.isfinite(sorted_nucleus_filter(x, 0.6)))


def rejection_reference(logits, cfg, uniform, rounds=2):
    """The rejection sampler as first written: every round over every row, then the sorted nucleus."""
    probs = torch.softmax(logits.float() / cfg.temperature, dim=-1)
    tokens = torch.zeros(probs.shape[:-1], dtype=torch.long)
    accepted = torch.zeros(probs.shape[:-1], dtype=torch.bool)
    for r in range(rounds):
        candidate = sampler.sample_from_probs(probs, uniform(r))
        take = (sampler.mass_above(probs, candidate) <= cfg.top_p) & ~accepted
        tokens = torch.where(take, candidate, tokens)
        accepted |= take
    nucleus = torch.softmax(sorted_nucleus_filter(logits.float() / cfg.temperature, cfg.top_p), dim=-1)
    return torch.where(accepted, tokens, sampler.sample_from_probs(nucleus, uniform(rounds)))


@pytest.mark.parametrize("top_p", [0.95, 0.3])
def test_rejection_sampler_retries_only_rejected_rows_with_the_same_draws(top_p):
    logits = logit_rows("zipf", 600, 50).view(20, 30, 50)
    cfg = SamplerConfig(top_p=top_p)
    rng = RowRandom([row_key(0, "p", i) for i in range(20)])
    uniform = lambda r: rng.uniform((30,), 0, RowRandom.TOKENS, r)
    tokens = sample_nucleus(logits, cfg, uniform)
    assert torch.equal(tokens, rejection_reference(logits, cfg, uniform))
    probs = sampler.tempered_probs(logits, cfg)
    assert torch.equal(sample_nucleus(logits, cfg, uniform, probs=probs), tokens)


def test_w_zero_draws_no_hard_sample_and_gives_the_same_samples(tiny_stack, monkeypatch):
    hard_draws = []

    def counted_sample(*args, **kwargs):
        hard_draws.append(1)
        return sample_nucleus(*args, **kwargs)

    monkeypatch.setattr(guidance, "sample_nucleus", counted_sample)
    skipped = guided_generate(tiny_stack, schedule=make_schedule("constant", value=0.0))
    assert not hard_draws
    monkeypatch.setattr(guidance, "always_zero", lambda schedule: False)  # draw it, as before
    drawn = guided_generate(tiny_stack, schedule=make_schedule("constant", value=0.0))
    assert hard_draws
    assert torch.equal(skipped.tokens, drawn.tokens)
    assert len(skipped.trace) == len(drawn.trace)
    for a, b in zip(skipped.trace, drawn.trace):
        assert torch.equal(a["guided_reward"], b["guided_reward"])


def test_the_lm_head_at_masked_columns_gives_the_full_passs_logits(tiny_stack):
    dllm = tiny_stack[0]
    ids = torch.randint(3, dllm.vocab_size - 1, (3, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    columns = torch.tensor([[0, 3, 7], [1, 2, 11], [5, 6, 9]])
    full = dllm.logits(ids, mask)[:, 8:]
    expected = full.gather(1, columns[..., None].expand(-1, -1, full.shape[-1]))
    # the same products on fewer rows: bit-equal on one thread; with more, the GEMM may split them otherwise
    torch.testing.assert_close(dllm.logits(ids, mask, start=8, columns=columns), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dllm.logits(ids, mask, start=8), full, atol=1e-5, rtol=1e-5)


def reference_optimize(guide, logits, positions, response, step, rng):
    """RewardGuidance.optimize as first written: phi one autograd leaf, one fused Adam over [N, n, V]."""
    n = positions.shape[1]
    phi = logits.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([phi], lr=guide.lr, fused=True)
    committed = guide.table[response]
    index = positions.unsqueeze(-1).expand(-1, -1, committed.shape[-1])
    for inner in range(guide.inner_steps):
        with torch.no_grad():
            weight = guide.schedule(phi.detach())
            hard = sample_nucleus(phi.detach(), guide.sampler,
                                  lambda r, inner=inner: rng.uniform((n,), step, RowRandom.HARD, inner, r))
            keep = first_eos_keep(response.scatter(1, positions, phi.detach().argmax(-1)), guide.eos_ids)
        relaxed = relaxed_embeddings(phi, guide.table, guide.sampler.temperature, weight, hard)
        scores = guide.reward_model.score_embeddings(guide.context, committed.scatter(1, index, relaxed), keep)
        optimizer.zero_grad()
        (-scores.sum()).backward()
        optimizer.step()
    return phi.detach()


def test_chunked_optimization_gives_the_whole_tensors_logits(tiny_stack, monkeypatch):
    dllm = tiny_stack[0]
    x, attention = dllm.pad_prompts(dllm.encode_prompts(ROWS))
    L, P = 6, x.shape[1]
    x = torch.cat([x, torch.full((4, L), dllm.mask_id)], 1)
    x[:, P + 2] = 11  # one committed column
    positions = torch.tensor([[0, 1, 3, 4, 5]]).expand(4, -1)
    logits = dllm.logits(x, torch.cat([attention, torch.ones(4, L, dtype=attention.dtype)], 1), P, positions)
    logits[..., dllm.mask_id] = float("-inf")
    rng = RowRandom(KEYS)
    guide = make_guide(tiny_stack, ROWS, CFG, inner_steps=3)
    expected = reference_optimize(guide, logits, positions, x[:, P:], 0, rng)
    whole = guide.optimize(logits, positions, x[:, P:], 0, rng)[0]  # the 20 rows are one chunk
    assert torch.equal(whole, expected)
    assert not torch.equal(whole, logits)  # it moved
    monkeypatch.setitem(sampler.CHUNK_ELEMENTS, "cpu", 3 * dllm.vocab_size)  # chunks of 3 and 2 rows
    chunked = guide.optimize(logits, positions, x[:, P:], 0, rng)[0]
    # products over 3 rows may round otherwise than over 20, and Adam's first steps (about lr * sign of the
    # gradient) magnify that where a gradient is near 0: the same logits to a small fraction of one step
    torch.testing.assert_close(chunked, expected, atol=0.01 * guide.lr, rtol=0)


def test_committed_blocks_run_once_into_the_reward_context_and_the_logits_stay_those_of_the_whole_input(tiny_stack):
    """A block mode's step: columns before the block are committed in every row, so the reward model runs
    them once per step (``committed_until``) and each inner step only the block; the optimized logits are
    those of scoring the whole response (to rounding), for less reward work."""
    dllm, reward = tiny_stack
    x, attention = dllm.pad_prompts(dllm.encode_prompts(ROWS))
    L, P = 12, x.shape[1]
    x = torch.cat([x, torch.full((4, L), dllm.mask_id)], 1)
    x[:, P:P + 8] = torch.randint(20, 200, (4, 8), generator=torch.Generator().manual_seed(0))  # two blocks of 4
    x[1, P + 5] = dllm.eos_ids[0]  # a row whose committed part ends early: the cut carries into the context
    positions = torch.arange(8, 12).expand(4, -1)
    logits = dllm.logits(x, torch.cat([attention, torch.ones(4, L, dtype=attention.dtype)], 1), P, positions)
    logits[..., dllm.mask_id] = float("-inf")
    guide = make_guide(tiny_stack, ROWS, CFG, inner_steps=3)
    work = []
    for committed_until in (0, 8):
        before = dict(reward.evaluations)
        phi, stats = guide.optimize(logits, positions, x[:, P:], 0, RowRandom(KEYS), committed_until=committed_until)
        work.append({name: reward.evaluations[name] - before[name] for name in before})
        if committed_until == 0:
            whole, whole_reward = phi, stats["guided_reward"]
    assert not torch.equal(whole, logits)  # it moved
    torch.testing.assert_close(stats["guided_reward"], whole_reward, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(phi, whole, atol=0.01 * guide.lr, rtol=0)
    assert work[1]["guided_columns"] < work[0]["guided_columns"] and work[1]["context_columns"] == 4 * 8


@pytest.mark.parametrize("kind", ["flat", "peaked", "zipf", "masked", "uniform"])
def test_entropy_without_a_log_per_token_is_the_sum_of_p_log_p(kind, monkeypatch):
    x = logit_rows(kind, 50, 300)
    p = torch.softmax(x, -1)
    exact = sampler.entropy(x)
    assert torch.equal(exact, -torch.special.xlogy(p, p).sum(-1))
    monkeypatch.setitem(fastpaths._enabled, "entropy", True)
    # as precise as the sum of p log p, also where the entropy is small (a peaked row)
    torch.testing.assert_close(sampler.entropy(x), exact, atol=1e-6, rtol=1e-5)


def test_compiling_is_off_unless_enabled_and_then_compiles_each_pass_once(monkeypatch):
    compiled = []

    def traced(fn, **options):  # dynamo with the eager backend: no code generation, same numbers
        compiled.append(fn.__name__)
        return torch._dynamo.optimize("eager", dynamic=options.get("dynamic"))(fn)

    monkeypatch.setattr(torch, "compile", traced)
    probs = torch.softmax(logit_rows("zipf", 8, 50), -1)
    tokens = torch.arange(8)
    eager = sampler.mass_above(probs, tokens)
    assert not compiled
    monkeypatch.setitem(fastpaths._enabled, "compile", False)
    fastpaths.enable("compile")
    try:
        assert torch.equal(sampler.mass_above(probs, tokens), eager)
        assert torch.equal(sampler.mass_above(probs[:5], tokens[:5]), eager[:5])
    finally:
        fastpaths.enable("compile", False)
    assert compiled == ["mass_above"]


def test_the_fast_paths_are_a_config_switch_that_is_part_of_a_jobs_identity_only_when_on(tmp_path):
    from conftest import compose_config

    from entrgi.bookkeeping.settings import baseline_settings, job_settings
    from entrgi.run import run

    default, fast = compose_config(), compose_config("fast_paths.entropy=true")
    assert "fast_paths" not in job_settings(default)
    assert "fast_paths" not in baseline_settings(default, "cpu", "float32")
    assert job_settings(fast)["fast_paths"] == {"entropy": True, "compile": False}
    assert baseline_settings(fast, "cpu", "float32")["fast_paths"]["entropy"]  # its best-of-K samples are its own

    tiny = ["benchmark.num_prompts=2", "sampler.gen_length=8", "sampler.steps=4", "logger=none"]
    entropies = []
    with pytest.MonkeyPatch.context() as patch:  # which entropy the run's remasking and schedule computed
        exact = torch.special.xlogy
        patch.setattr(torch.special, "xlogy", lambda *a: entropies.append("xlogy") or exact(*a))
        run(compose_config(*tiny, "fast_paths.entropy=true"), tmp_path / "fast")
        assert entropies == [] and not fastpaths.enabled("entropy")  # on during the run only
        run(compose_config(*tiny), tmp_path / "default")
        assert entropies
