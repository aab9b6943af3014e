"""Cost of a guided denoising step: parts, throughput, memory, FLOPs, and how they scale.

    python scripts/bench.py                                   # tiny stack on the CPU: table + JSON
    python scripts/bench.py --sweep gen_length=32,64,128 --sweep vocab=1024,4096,16384
    python scripts/bench.py --preset dream-skywork --device cuda --dtype bf16 \\
        --prompts 4 --samples 4 --gen-length 128 --steps 128 --inner-steps 3   # the paper's setting

Models are built in memory with random weights from transformers' Qwen2 (the dLLM, Dream-style
shifted logits) and Qwen3 (the sequence-classification reward model) configs: cost depends on
shapes, not on what the weights learned. ``tiny`` has the embedded offline stack's shapes;
``dream-skywork`` those of Dream-v0-Instruct-7B and Skywork-Reward-V2-Qwen3-1.7B (``--layers``
cuts both to fewer layers, e.g. to run the real widths on a CPU).

Reported: seconds per part of a guided step (dLLM forward, pre-guidance top-p filter, relaxation,
reward forward, reward backward, optimizer, sampling and remasking), end-to-end prompts/s and
committed tokens/s, peak memory, and the FLOPs of a guided step against the machine's measured
matmul rate (CPU) or the device's peak (GPU).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from entrgi.evaluation.flop_model import SequenceFlops, mean_masked, relaxation_flops  # noqa: E402
from entrgi.models.attention import AttentionStructure  # noqa: E402
from entrgi.bookkeeping.timing import SectionTimer  # noqa: E402
from entrgi.models.diffusion import DiffusionLM  # noqa: E402
from entrgi.models.loading import resolve_device, resolve_dtype  # noqa: E402
from entrgi.models.reward import RewardModel  # noqa: E402
from entrgi.sampling import fastpaths  # noqa: E402
from entrgi.sampling.guidance import RewardGuidance  # noqa: E402
from entrgi.sampling.rng import row_key  # noqa: E402
from entrgi.sampling.sampler import SamplerConfig, generate  # noqa: E402
from entrgi.sampling.schedules import make_schedule  # noqa: E402

PARTS = ("dllm_forward", "pre_guidance_filter", "relaxation", "reward_forward", "reward_backward", "optimizer",
         "sampling_remasking")

# Shapes: (dLLM as Qwen2, reward model as Qwen3). Dense bf16 peaks of known GPUs, FLOP/s.
PRESETS = {
    "tiny": (
        dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=4096, tie_word_embeddings=True),
        dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=32, vocab_size=4096),
    ),
    "dream-skywork": (  # Dream-v0-Instruct-7B; Skywork-Reward-V2-Qwen3-1.7B
        dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
             num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
        dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
             num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True),
    ),
}
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


@dataclass
class Setting:
    preset: str = "tiny"
    layers: int | None = None  # both models cut to this many layers
    vocab: int | None = None  # both vocabularies set to this size
    prompts: int = 4
    samples: int = 4  # K
    gen_length: int = 64  # L
    steps: int = 32  # T
    inner_steps: int = 3  # M
    prompt_length: int = 24  # dLLM prompt tokens (the reward prefix is this plus the chat markup)
    suffix_length: int = 2
    schedule: str = "entropy"
    attn: str = "sdpa"
    prefix_cache: bool = True  # the reward prefix's keys/values computed once per generate
    compile: bool = False  # torch.compile the reward model and the compilable vocabulary passes
    fast_entropy: bool = False  # entropy without a logarithm per token (sampler.entropy)
    block_length: int | None = None  # sampler.block_length
    cache: str = "none"  # sampler.cache: none | prefix | dual (bidirectional dLLM)
    threshold: float | None = None  # sampler.threshold (parallel decoding)
    block_causal: int | None = None  # run the dLLM block-causal with blocks of this size (exact KV cache)

    @property
    def rows(self) -> int:
        return self.prompts * self.samples


def build(setting: Setting, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """Random-weight dLLM and reward model of the preset's shapes, and the bridge table."""
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForSequenceClassification

    dllm_shape, reward_shape = (dict(s) for s in PRESETS[setting.preset])
    for shape in (dllm_shape, reward_shape):
        if setting.layers:
            shape["num_hidden_layers"] = setting.layers
        if setting.vocab:
            shape["vocab_size"] = setting.vocab
    common = dict(max_position_embeddings=4096, pad_token_id=0, eos_token_id=2, rms_norm_eps=1e-6,
                  attn_implementation=setting.attn)
    torch.manual_seed(seed)
    with torch.device(device):
        dllm_model = Qwen2ForCausalLM(Qwen2Config(**dllm_shape, **common)).to(dtype)
        reward_model = Qwen3ForSequenceClassification(Qwen3Config(**reward_shape, num_labels=1, **common)).to(dtype)
    V = dllm_shape["vocab_size"]
    tokenizer = SimpleNamespace(pad_token_id=0)
    attention = AttentionStructure("block_causal", setting.block_causal) if setting.block_causal else \
        AttentionStructure()
    dllm = DiffusionLM(dllm_model.eval().requires_grad_(False), tokenizer, mask_id=V - 1, eos_ids=[2],
                       shift_logits=True, max_length=4096, attention=attention)
    reward = RewardModel(reward_model, tokenizer)
    E = reward.embeddings.detach()
    table = torch.zeros(V, E.shape[1], dtype=E.dtype, device=device)  # the bridge: dLLM id -> reward embedding
    shared = min(V, E.shape[0])
    table[:shared] = E[:shared]
    return dllm, reward, table


def workload(setting: Setting, V: int, seed: int = 0):
    """Prompt ids (varying lengths, so left padding is exercised), row keys, reward prefix/suffix ids."""
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for i in range(setting.prompts):
        length = max(1, setting.prompt_length - (i % 3))
        prompts.append(torch.randint(3, V - 1, (length,), generator=g).tolist())
    prompt_ids = [p for p in prompts for _ in range(setting.samples)]
    keys = [row_key(seed, str(i), k) for i in range(setting.prompts) for k in range(setting.samples)]
    markup = [1, 5, 6]
    prefix_ids = [markup + p + markup for p in prompt_ids]
    suffix_ids = [[7] * setting.suffix_length for _ in prompt_ids]
    return prompt_ids, keys, prefix_ids, suffix_ids


def sampler_config(setting: Setting) -> SamplerConfig:
    return SamplerConfig(gen_length=setting.gen_length, steps=setting.steps, block_length=setting.block_length,
                         cache=setting.cache, threshold=setting.threshold)


# -- FLOPs ---------------------------------------------------------------------------------------

def guided_step_count(out) -> int:
    """The guided steps of the row that took the most. Not ``len(out.trace)``: a block-causal batch of
    mixed prompt lengths is stepped group by group and its trace holds every group's steps, one
    after another (with the threshold rule a batch may also take more passes than any one row, as
    rows wait for each other at block ends)."""
    return int(out.row_costs["guided_steps"].max())


def generation_flops(setting: Setting, dllm: DiffusionLM, reward: RewardModel, prompt_width: int,
                     prefix_width: int, suffix_width: int, out, unguided=None) -> dict:
    """FLOPs of one ``generate`` call ``out``, from its counted work and the shapes (``entrgi.evaluation.flop_model``).

    The dLLM: the columns it computed (cached ones are free), the output layer at the masked
    columns, the keys each query attended to. Per guided step and inner step, per row: the
    relaxation matmul forward and input-gradient backward at its masked positions, and the reward
    model's forward and input-gradient backward (no weight gradients) over the response and suffix,
    attending causally to the prefix, whose keys/values are computed once (docs/cost-model.md).
    ``unguided``: the same call without guidance, for its dLLM FLOPs (the threshold rule takes
    other steps when guided).
    """
    N, L, M = setting.rows, setting.gen_length, setting.inner_steps
    sequence = SequenceFlops.of(dllm.model.config, reward.model.config, dllm.vocab_size, prompt_width, L,
                                (prefix_width, suffix_width), mean_masked(L, setting.steps))

    def dllm_flops(run) -> float:
        c = {name: value.sum().item() for name, value in run.row_costs.items()}
        return (sequence.dllm_column * c["dllm_columns"] + sequence.dllm_head_column * c["dllm_head_columns"]
                + sequence.dllm_attention_key * c["dllm_attention_keys"])

    guided_row_steps = out.row_costs["guided_steps"].sum().item()
    positions = out.row_costs["guided_positions"].sum().item()
    dllm_total = dllm_flops(out)
    work = out.reward_work  # the reward model's columns and keys as computed (the block modes score less)
    reward_total = (sequence.reward_column * (2 * work["guided_columns"] + work["context_columns"])
                    + sequence.reward_attention_key * (3 * work["guided_keys"] + work["context_keys"]))
    reward_inner = reward_total / (M * guided_row_steps) * N if guided_row_steps else 0.0
    relaxation = M * 2 * relaxation_flops(positions, dllm.vocab_size, reward.model.config.hidden_size)
    prefix_once = N * sequence.reward_prefix
    total = dllm_total + reward_total + relaxation + prefix_once
    steps = guided_step_count(out)
    return {"guided_steps": steps, "denoising_steps_per_sample": out.row_costs["denoising_steps"].float().mean().item(),
            "dllm_columns_per_sample": out.row_costs["dllm_columns"].float().mean().item(),
            "dllm_total": dllm_total, "dllm_forward_per_step": dllm_total / steps,
            "reward_fwd_bwd_per_inner": reward_inner, "relaxation_per_generate": relaxation,
            "prefix_once": prefix_once, "total": total,
            "unguided_total": dllm_flops(unguided if unguided is not None else out), "per_guided_step": total / steps}


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Achieved FLOP/s of a large square torch.mm: the CPU's practical "peak".

    The size doubles from 256 while one product takes under 0.1 s (up to 2048 on a CPU, 8192 on
    a GPU): some CPUs run bf16 products through a slow path, where a 2048 product takes a minute.
    """
    def product_seconds(a: torch.Tensor) -> float:
        sync(device)
        start = Clock(device)
        torch.mm(a, a)
        sync(device)
        return start.elapsed()

    n, largest = 256, 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    product_seconds(a)  # warm-up
    while n < largest and product_seconds(a) < 0.1:
        n *= 2
        a = torch.randn(n, n, device=device, dtype=dtype)
        product_seconds(a)  # warm-up at the new size
    times, deadline = [], time.perf_counter() + seconds
    while not times or time.perf_counter() < deadline:
        times.append(product_seconds(a))
    return 2 * n ** 3 / min(times)


class Clock:
    """Seconds of compute since creation: wall time on a GPU; on the CPU, process CPU time per
    thread, which equals wall time on an idle machine and stays honest on a shared one."""

    def __init__(self, device: torch.device):
        self.device = device
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        if self.device.type == "cuda":
            return time.perf_counter() - self.wall
        return (time.process_time() - self.cpu) / torch.get_num_threads()

    def wall_elapsed(self) -> float:
        return time.perf_counter() - self.wall


# -- measuring -----------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a block: the CUDA allocator's peak, or the process's resident high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:  # resets VmHWM to the current RSS (Linux)
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass
            self.base = _vm("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = _vm("VmHWM")
        self.added = self.peak - self.base


def _vm(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_once(setting: Setting, stack, device, guided: bool = True, timer: SectionTimer | None = None):
    dllm, reward, table = stack
    prompt_ids, keys, prefix_ids, suffix_ids = workload(setting, dllm.vocab_size)
    cfg = sampler_config(setting)
    guide = None
    if guided:
        context = reward.context_from_ids(prefix_ids, suffix_ids, cache_prefix=setting.prefix_cache)
        guide = RewardGuidance(reward, table, context, make_schedule(setting.schedule), cfg,
                               torch.tensor(dllm.eos_ids, device=device), setting.inner_steps, 0.5)
    before = dict(reward.evaluations)
    sync(device)
    clock = Clock(device)
    if timer is not None:
        with timer:
            out = generate(dllm, prompt_ids, keys, cfg, guide)
    else:
        out = generate(dllm, prompt_ids, keys, cfg, guide)
    sync(device)
    out.wall_seconds = clock.wall_elapsed()
    out.reward_work = {name: reward.evaluations[name] - before[name] for name in before}  # what the guidance ran
    return clock.elapsed(), out


def measure(setting: Setting, device: torch.device, dtype: torch.dtype, repeat: int, peak: float,
            breakdown: bool = True, stack=None, unguided: bool = True) -> dict:
    stack = stack or build(setting, device, dtype)
    dllm, reward, _ = stack
    if not (setting.compile or setting.fast_entropy):
        block = setting.block_causal or setting.block_length  # a warm-up of one block (of 8 positions without blocks)
        run_once(replace(setting, gen_length=block or min(8, setting.gen_length), steps=min(4, setting.steps)), stack,
                 device)
    with fast_paths_on(setting, stack, device) as fast:
        times, wall_times = [], []
        with PeakMemory(device) as memory:
            for _ in range(repeat):
                seconds, out = run_once(setting, stack, device)
                times.append(seconds)
                wall_times.append(out.wall_seconds)
        seconds = min(times)
        # seconds: see Clock (CPU: process CPU time per thread); wall_seconds: as experienced
        result = {"setting": asdict(setting), "seconds": {"min": seconds, "median": statistics.median(times),
                                                          "all": times},
                  "wall_seconds": {"min": min(wall_times), "all": wall_times}}
        if fast:
            result["fast_paths"] = fast
        if unguided:  # the same generate without guidance: best-of-K's sampling
            plain = [run_once(setting, stack, device, guided=False) for _ in range(repeat)]
            result["unguided_seconds"] = {"min": min(s for s, _ in plain), "all": [s for s, _ in plain],
                                          "wall": [out.wall_seconds for _, out in plain]}
            result["unguided_seconds_per_prompt"] = result["unguided_seconds"]["min"] / setting.prompts
        guided_steps = guided_step_count(out)
        prompt_width = max(len(p) for p in workload(setting, dllm.vocab_size)[0])
        _, _, prefix_ids, suffix_ids = workload(setting, dllm.vocab_size)
        flops = generation_flops(setting, dllm, reward, prompt_width, max(map(len, prefix_ids)),
                                 max(map(len, suffix_ids)), out, plain[0][1] if unguided else None)
        result.update({
            "seconds_per_prompt": seconds / setting.prompts,
            "seconds_per_guided_step": seconds / guided_steps,
            "guided_steps_per_second": guided_steps / seconds,
            "prompts_per_second": setting.prompts / seconds,
            "committed_tokens_per_second": setting.rows * setting.gen_length / seconds,
            "peak_memory_bytes": memory.peak,
            "peak_memory_added_bytes": memory.added,
            "flops": flops,
            "achieved_flops_per_second": flops["total"] / seconds,
            "fraction_of_peak": flops["total"] / seconds / peak,
            "flop_bound_seconds_per_step": flops["per_guided_step"] / peak,
            "ratio_to_flop_bound": seconds / (flops["total"] / peak),
        })
        if breakdown:
            timer = SectionTimer(device)
            elapsed, out = run_once(setting, stack, device, timer=timer)
            result["parts_seconds"] = {name: timer.seconds.get(name, 0.0) for name in PARTS}
            result["parts_seconds"]["other"] = out.wall_seconds - sum(timer.seconds.values())
            result["breakdown_total_seconds"] = out.wall_seconds
            if device.type == "cpu":  # per thread, as Clock
                threads = torch.get_num_threads()
                cpu = {name: timer.cpu_seconds.get(name, 0.0) / threads for name in PARTS}
                result["parts_cpu_seconds"] = {**cpu, "other": elapsed - sum(cpu.values())}
        return result


@contextlib.contextmanager
def fast_paths_on(setting: Setting, stack, device: torch.device):
    """The fast paths the setting asks for (``entrgi.sampling.fastpaths``) on while the block runs and off
    after it, so that a sweep's next setting samples its default rows with the default code. Yields what
    the first generate costs with them (compiling, if asked) and how many rows' samples stay those of
    the default code; ``{}`` when the setting asks for none."""
    if not (setting.compile or setting.fast_entropy):
        yield {}
        return
    default = run_once(setting, stack, device)[1]
    with fastpaths.using({"entropy": setting.fast_entropy, "compile": setting.compile}):
        if setting.compile:
            stack[1].compile()
        clock = Clock(device)
        first = run_once(setting, stack, device)[1]
        yield {"first_generate_cpu_seconds": clock.elapsed(), "first_generate_wall_seconds": clock.wall_elapsed(),
               "rows_identical_to_default": (first.tokens == default.tokens).all(-1).float().mean().item()}


def environment(device: torch.device) -> dict:
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
           "cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(device),
           "load_average_1m": os.getloadavg()[0]}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def parse_sweep(text: str) -> tuple[str, list[int]]:
    name, _, values = text.partition("=")
    aliases = {"L": "gen_length", "M": "inner_steps", "V": "vocab", "K": "samples"}
    name = aliases.get(name, name)
    if name not in {"gen_length", "prompts", "samples", "inner_steps", "vocab", "steps"} or not values:
        raise SystemExit(f"bench: bad --sweep {text!r}; use e.g. --sweep gen_length=32,64,128 "
                         "(gen_length|prompts|samples|inner_steps|vocab|steps)")
    return name, [int(v) for v in values.split(",")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--layers", type=int, default=None, help="cut both models to this many layers")
    parser.add_argument("--vocab", type=int, default=None, help="set both vocabularies to this size")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4, help="K samples per prompt")
    parser.add_argument("--gen-length", type=int, default=64, help="L")
    parser.add_argument("--steps", type=int, default=32, help="T")
    parser.add_argument("--inner-steps", type=int, default=3, help="M")
    parser.add_argument("--prompt-length", type=int, default=24)
    parser.add_argument("--schedule", default="entropy")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--no-prefix-cache", action="store_true", help="re-run the reward prefix at every score")
    parser.add_argument("--no-fused-adam", action="store_true", help="the per-op Adam update (to compare)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the reward model and the compilable vocabulary passes (off by default)")
    parser.add_argument("--fast-entropy", action="store_true", help="entropy without a log per token (off by default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--block-length", type=int, default=None, help="sampler.block_length (blocks of L)")
    parser.add_argument("--cache", default="none", choices=["none", "prefix", "dual"],
                        help="sampler.cache: Fast-dLLM's approximate dLLM caches (need --block-length)")
    parser.add_argument("--threshold", type=float, default=None, help="sampler.threshold: parallel decoding")
    parser.add_argument("--block-causal", type=int, default=None, metavar="SIZE",
                        help="run the dLLM block-causal with blocks of SIZE, over its exact KV cache")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                        help="also time each value of one setting (gen_length, prompts, samples, inner_steps, vocab)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-part timing run")
    parser.add_argument("--no-unguided", action="store_true", help="skip timing the unguided (best-of-K) generate")
    parser.add_argument("--json", default="outputs/bench.json", help="where to write the results")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_fused_adam:  # the update before fusing: one op at a time
        per_op_adam = torch.optim.Adam
        torch.optim.Adam = lambda params, fused=None, **kw: per_op_adam(params, foreach=False, **kw)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    setting = Setting(preset=args.preset, layers=args.layers, vocab=args.vocab, prompts=args.prompts,
                      samples=args.samples, gen_length=args.gen_length, steps=args.steps,
                      inner_steps=args.inner_steps, prompt_length=args.prompt_length, schedule=args.schedule,
                      attn=args.attn, prefix_cache=not args.no_prefix_cache, compile=args.compile,
                      fast_entropy=args.fast_entropy, block_length=args.block_length, cache=args.cache,
                      threshold=args.threshold, block_causal=args.block_causal)
    measured_peak = matmul_peak(device, dtype)
    peak = measured_peak
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), measured_peak)
    report = {"environment": environment(device), "command": " ".join(sys.argv), "dtype": str(dtype),
              "matmul_flops_per_second": measured_peak, "peak_flops_per_second": peak}
    report["main"] = measure(setting, device, dtype, args.repeat, peak, breakdown=not args.no_breakdown,
                             unguided=not args.no_unguided)
    print_main(report)
    report["sweeps"] = {}
    for text in args.sweep:
        name, values = parse_sweep(text)
        rows = []
        for value in values:
            s = replace(setting, **{name: value})
            if name == "gen_length":
                s = replace(s, steps=max(1, value * setting.steps // setting.gen_length))
            rows.append(measure(s, device, dtype, args.repeat, peak, breakdown=False, unguided=False))
        report["sweeps"][name] = rows
        print_sweep(name, rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return report


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.0f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


def print_main(report: dict) -> None:
    r, s = report["main"], report["main"]["setting"]
    env = report["environment"]
    print(f"{s['preset']} (layers={s['layers'] or 'preset'}, vocab={s['vocab'] or 'preset'}) on "
          f"{env.get('gpu', env['cpu'])}, {report['dtype']}, torch {env['torch']}, {env['threads']} threads")
    print(f"{s['prompts']} prompts x K={s['samples']}, L={s['gen_length']}, T={s['steps']}, M={s['inner_steps']}, "
          f"attn={s['attn']}; blocks {s['block_length'] or s['block_causal'] or '-'}, cache {s['cache']}, "
          f"threshold {s['threshold']}, {'block-causal' if s['block_causal'] else 'bidirectional'} dLLM")
    if report["environment"]["device"] == "cpu":
        print("seconds are process CPU seconds per thread (wall time on an idle machine; see Clock)")
    print(f"matmul peak (measured): {report['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s; "
          f"peak used for the bound: {report['peak_flops_per_second'] / 1e9:.1f} GFLOP/s")
    if "parts_seconds" in r:
        total = r["breakdown_total_seconds"]
        cpu = r.get("parts_cpu_seconds", r["parts_seconds"])  # the CPU's own time where there is one
        cpu_total = sum(cpu.values())
        print(f"\n{'part':<22}{'wall s':>10}{'seconds':>10}{'share':>8}   (one generate, device syncs per part)")
        for name, value in r["parts_seconds"].items():
            c = cpu.get(name, float("nan"))
            print(f"{name:<22}{value:>10.3f}{c:>10.3f}{100 * c / cpu_total:>7.1f}%")
        print(f"{'total':<22}{total:>10.3f}{cpu_total:>10.3f}")
    f = r["flops"]
    print(f"\nend to end (best of {len(r['seconds']['all'])}): {r['seconds']['min']:.3f} s per generate "
          f"({r['wall_seconds']['min']:.3f} s wall), "
          f"{r['seconds_per_prompt']:.3f} s per prompt, {r['guided_steps_per_second']:.2f} guided steps/s")
    print(f"throughput: {r['prompts_per_second']:.3f} prompts/s, {r['committed_tokens_per_second']:.1f} committed tokens/s")
    if "unguided_seconds" in r:
        print(f"unguided (best-of-K sampling): {r['unguided_seconds']['min']:.3f} s per generate, "
              f"{r['unguided_seconds_per_prompt']:.3f} s per prompt, "
              f"{r['unguided_seconds']['min'] / (f['unguided_total'] / report['peak_flops_per_second']):.1f}x its FLOP bound")
    print(f"peak memory: {_fmt_bytes(r['peak_memory_bytes'])} ({_fmt_bytes(r['peak_memory_added_bytes'])} above the start)")
    if "fast_paths" in r:
        c = r["fast_paths"]
        print(f"fast paths: the first generate took {c['first_generate_wall_seconds']:.1f} s wall "
              f"({c['first_generate_cpu_seconds']:.1f} s CPU in-process); rows identical to the default: "
              f"{100 * c['rows_identical_to_default']:.0f}%")
    print(f"FLOPs per guided step: {f['per_guided_step'] / 1e9:.2f} GFLOP (dLLM {f['dllm_forward_per_step'] / 1e9:.2f}, "
          f"reward fwd+bwd {f['reward_fwd_bwd_per_inner'] / 1e9:.2f} x M); denoising steps per sample "
          f"{f['denoising_steps_per_sample']:.1f}, dLLM columns per sample {f['dllm_columns_per_sample']:.0f}, "
          f"per generate {f['total'] / 1e9:.2f} GFLOP")
    print(f"achieved {r['achieved_flops_per_second'] / 1e9:.1f} GFLOP/s = {100 * r['fraction_of_peak']:.1f}% of peak; "
          f"{r['ratio_to_flop_bound']:.1f}x the FLOP bound")


def print_sweep(name: str, rows: list[dict]) -> None:
    print(f"\nscaling with {name}")
    print(f"{name:>12}{'s/generate':>12}{'s/step':>10}{'prompts/s':>11}{'tokens/s':>10}{'GFLOP/step':>12}"
          f"{'x bound':>9}{'peak mem':>11}")
    for r in rows:
        print(f"{r['setting'][name] if r['setting'][name] is not None else '-':>12}{r['seconds']['min']:>12.3f}"
              f"{r['seconds_per_guided_step']:>10.4f}{r['prompts_per_second']:>11.3f}"
              f"{r['committed_tokens_per_second']:>10.1f}{r['flops']['per_guided_step'] / 1e9:>12.2f}"
              f"{r['ratio_to_flop_bound']:>9.1f}{_fmt_bytes(r['peak_memory_bytes']):>11}")


if __name__ == "__main__":
    main()
