"""Train the embedded default stack from scratch: tokenizer, tiny masked diffusion LM, tiny reward model.

Deterministic, offline, CPU. Data: CPython's own documentation (PSF licence), read from the
running interpreter (``entrgi.testbed.corpus``). The task: a prompt names a function (or a
language-reference topic) and asks to say what it does using two words of a small vocabulary;
the answer is a sentence of its documentation that uses them. The held-out benchmark's functions
are never trained on.

1. tokenizer: byte-level BPE on the documentation (``entrgi.testbed.build.build_tokenizer``);
2. dLLM: a Dream-style (shifted logits) Qwen2 trained with the masked-diffusion objective on
   chat-formatted (prompt, sentence) pairs, the sentence padded with EOS to the sampler's
   ``gen_length`` so the model learns where answers end; the keywords are drawn afresh every
   time a sentence is used, so the model learns to use the words it is given rather than
   memorizing one prompt per sentence;
3. reward model: a 2-block Qwen3 sequence classifier trained from scratch, scoring (prompt,
   response) through the chat template, with a Bradley-Terry loss on candidate responses ranked
   by a gold score: the share of the asked words the response uses plus its bigram F1 against
   the sentence. Candidates are the sentence, corrupted copies of it (an asked word dropped or
   replaced by an unasked one, words shuffled, unasked words stuffed in, the bare keywords),
   another sentence, and the dLLM's own samples, with edited copies, for the sentences of every
   fifth training name, which the dLLM never trains on: there its samples look like those on the
   held-out prompts, which is where the reward model must be right;
4. then ``--guided-rounds`` rounds on what EntRGi makes of the reward model on those prompts
   (through ``entrgi.run``): guided answers, ranked by the gold score with the rest, teach it
   the answers it overrates. The keyword judge applies the coverage rule to held-out prompts;
   ROUGE-L, the other judge, is not used in training.

    nice -n 10 python scripts/train_tiny.py               # writes entrgi/assets/ and its MODEL_CARD.md
    nice -n 10 python scripts/train_tiny.py --reuse-dllm  # keeps the dLLM, retrains the reward model
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]

from entrgi.evaluation.judges.keywords import keyword_coverage
from entrgi.evaluation.judges.lexical import ngram_f1, rouge_l
from entrgi.models.batching import left_pad
from entrgi.models.diffusion import DiffusionLM
from entrgi.sampling.rng import row_key
from entrgi.sampling.sampler import SamplerConfig, generate
from entrgi.testbed.build import build_models, build_tokenizer
from entrgi.testbed.corpus import (
    HELD_OUT_EVERY,
    MAX_CHARS,
    MAX_WORDS,
    MIN_WORDS,
    MODULES,
    NUM_KEYWORDS,
    held_out_prompts,
    keyword_vocabulary,
    pick_keywords,
    question,
    training_sentences,
)
from entrgi.training.losses import (
    bradley_terry_loss,
    last_column_scores,
    mask_responses,
    masked_diffusion_loss,
    sample_masking_ratio,
)

EOS, PAD, MASK = "<|im_end|>", "<|endoftext|>", "<|mask|>"
MARGIN = 0.1  # a pair counts as a preference when the gold scores differ by more than this


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- data -----------------------------------------------------------------------------------------

def response_ids(tokenizer, text: str, length: int) -> list[int] | None:
    """``text``'s ids, ``<|im_end|>``, then ``<|endoftext|>`` padding to ``length``; None if it does not fit."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) > length - 1:
        return None
    eos, pad = tokenizer.convert_tokens_to_ids([EOS, PAD])
    return ids + [eos] + [pad] * (length - 1 - len(ids))


def prompt_ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False))


def runtime_tokenizer(tokenizer, config):
    """The tokenizer as ``from_pretrained`` loads it beside the model: train on exactly what runs.

    The model type can change the tokenizer class (Qwen2's splits digits one by one).
    """
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        config.save_pretrained(folder)
        return AutoTokenizer.from_pretrained(folder)


def split_reward_only(sentences: list[tuple[str, str]], every: int) -> tuple[list, list]:
    """(dLLM training sentences, reward-only sentences): every ``every``-th name's sentences are
    kept from the dLLM, so its samples on them look like its samples on unseen prompts."""
    names = list(dict.fromkeys(s[0] for s in sentences))
    reward_only = set(names[::every])
    return ([s for s in sentences if s[0] not in reward_only], [s for s in sentences if s[0] in reward_only])


# -- the diffusion LM -----------------------------------------------------------------------------

def trainable(model) -> DiffusionLM:
    """The network as the sampler runs it (shifted logits, bidirectional), for its forward with gradients."""
    return DiffusionLM(model, tokenizer=None, mask_id=-1, eos_ids=[], shift_logits=True, max_length=0)


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def diffusion_batch_loss(model, prompts: list[list[int]], responses: torch.Tensor, mask_id: int, pad_id: int,
                         generator: torch.Generator) -> torch.Tensor:
    prompt, prompt_mask = left_pad(prompts, pad_id)
    t = sample_masking_ratio(len(prompts), generator)
    noised, masked = mask_responses(responses, t, torch.rand(responses.shape, generator=generator), mask_id)
    ids = torch.cat([prompt, noised], 1)
    attention = torch.cat([prompt_mask, torch.ones_like(noised)], 1)
    logits = trainable(model).forward(ids, attention, start=prompt.shape[1])
    return masked_diffusion_loss(logits, responses, masked, t)


def train_dllm(model, sentences, tokenizer, args) -> dict:
    """Masked-diffusion SFT on ``sentences`` = [(name, sentence, response ids [L])], fresh keywords per draw."""
    mask_id, pad_id = tokenizer.convert_tokens_to_ids(MASK), tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(args.seed)
    order = random.Random(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.dllm_lr, weight_decay=0.01, betas=(0.9, 0.98))
    steps, losses = args.dllm_steps, []
    model.train()
    indices: list[int] = []
    for step in range(steps):
        if len(indices) < args.batch_size:
            indices += order.sample(range(len(sentences)), len(sentences))
        batch, indices = [sentences[i] for i in indices[: args.batch_size]], indices[args.batch_size:]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, args.dllm_lr)
        prompts = [prompt_ids(tokenizer, question(name, pick_keywords(text, order))) for name, text, _ in batch]
        loss = diffusion_batch_loss(model, prompts, torch.tensor([ids for *_, ids in batch]), mask_id, pad_id,
                                    generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 200 == 0 or step == 0:
            log(f"dllm step {step + 1}/{steps} loss {sum(losses[-200:]) / len(losses[-200:]):.3f}")
    model.eval()
    return {"first_loss": losses[0], "final_loss": sum(losses[-100:]) / len(losses[-100:])}


@torch.no_grad()
def diffusion_eval_loss(model, examples, tokenizer, seed: int, batch_size: int = 64) -> float:
    """The masked-diffusion loss on ``examples`` = [(prompt ids, response ids)] with a fixed draw of masks."""
    mask_id, pad_id = tokenizer.convert_tokens_to_ids(MASK), tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        loss = diffusion_batch_loss(model, [p for p, _ in chunk], torch.tensor([r for _, r in chunk]), mask_id,
                                    pad_id, generator)
        total += loss.item() * len(chunk)
    return total / len(examples)


def sample_texts(dllm: DiffusionLM, prompts: list[str], ids: list[str], k: int, sampler: SamplerConfig,
                 seed: int, batch_size: int = 32) -> list[list[str]]:
    """``k`` unguided samples per prompt, with the package's own sampler."""
    out = []
    width = max(len(p) for p in dllm.encode_prompts(prompts))
    for start in range(0, len(prompts), batch_size):
        chunk_p, chunk_id = prompts[start:start + batch_size], ids[start:start + batch_size]
        encoded = [p for p in dllm.encode_prompts(chunk_p) for _ in range(k)]
        keys = [row_key(seed, i, s) for i in chunk_id for s in range(k)]
        texts = dllm.decode(generate(dllm, encoded, keys, sampler, prompt_width=width).tokens)
        out += [texts[i * k:(i + 1) * k] for i in range(len(chunk_p))]
    return out


# -- the reward model -----------------------------------------------------------------------------

def gold_score(text: str, keywords: list[str], sentence: str) -> float:
    """What the reward model learns to predict: keywords used, plus bigram F1 against the sentence."""
    return keyword_coverage(text, keywords) + ngram_f1(text, sentence, 2)


def bare(word: str) -> str:
    """A whitespace-split word as a keyword is written: lower case, no punctuation around it."""
    return word.lower().strip(".,;:()\"'")


def without(words: list[str], keyword: str) -> list[str]:
    return [w for w in words if bare(w) != keyword]


def other_keywords(keywords: list[str], count: int, rng: random.Random) -> list[str]:
    """Words a prompt could ask for but this one does not: as fluent, not what was asked."""
    return rng.sample([w for w in keyword_vocabulary() if w not in keywords], count)


def substituted(words: list[str], replacements: list[str], rng: random.Random) -> str:
    """``words`` with random positions replaced by ``replacements``."""
    out = words[:] or ["."]
    for word, i in zip(replacements, rng.sample(range(len(out)), min(len(replacements), len(out)))):
        out[i] = word
    return " ".join(out)


def corruptions(sentence: str, keywords: list[str], other: str, rng: random.Random) -> list[str]:
    """Worse answers than ``sentence``: a keyword dropped, two dropped, one replaced by a word the
    prompt did not ask for, the words shuffled, the bare keywords, another sentence, and three
    words replaced by words the prompt did not ask for."""
    words = sentence.split()
    dropped = rng.sample(keywords, 2)
    one_dropped = without(words, dropped[0])
    two_dropped = without(one_dropped, dropped[1])
    unasked = other_keywords(keywords, 1, rng)[0]
    replaced = [unasked if bare(w) == dropped[0] else w for w in words]
    shuffled = words[:]
    rng.shuffle(shuffled)
    kept = [w for w in words if bare(w) not in keywords]
    stuffed = substituted(kept, other_keywords(keywords, 3, rng), rng)
    return [" ".join(one_dropped), " ".join(two_dropped), " ".join(replaced), " ".join(shuffled),
            " ".join(rng.sample(keywords, len(keywords))), other, stuffed]


def sample_edits(sample: str, keywords: list[str], rng: random.Random) -> list[str]:
    """A dLLM sample with one word replaced by an asked word, the same word replaced by a word
    the prompt did not ask for, and two words replaced by such words: the difference between
    using the asked words and merely using vocabulary words, on the dLLM's own text."""
    words = sample.split() or ["."]
    i = rng.randrange(len(words))
    asked, unasked = rng.choice(keywords), other_keywords(keywords, 1, rng)[0]
    return [" ".join(words[:i] + [asked] + words[i + 1:]), " ".join(words[:i] + [unasked] + words[i + 1:]),
            substituted(words, other_keywords(keywords, 2, rng), rng)]


def reward_group(name: str, sentence: str, keywords: list[str], other: str, samples: list[str],
                 rng: random.Random) -> dict:
    """One prompt's candidates (the sentence first, the dLLM's samples last) with their gold scores,
    and its matching pairs: (better, worse) candidates that differ in the asked words only."""
    edits = [e for sample in samples for e in sample_edits(sample, keywords, rng)]
    texts = [sentence] + corruptions(sentence, keywords, other, rng) + edits + list(samples)
    gold = [gold_score(t, keywords, sentence) for t in texts]
    first_sample = len(texts) - len(samples)
    # positions in ``texts``: 1, 3, 7 are corruptions' one-dropped, replaced and stuffed; the edits
    # of sample k start at 8 + 3k, in sample_edits' order
    matching = [(0, 1), (0, 3), (0, 7)]
    for k in range(len(samples)):
        asked, unasked, stuffed, sample = 8 + 3 * k, 9 + 3 * k, 10 + 3 * k, first_sample + k
        matching += [(asked, unasked), (asked, sample), (sample, stuffed)]
    return {"prompt": question(name, keywords), "keywords": keywords, "texts": texts, "num_samples": len(samples),
            "matching": [(a, b) for a, b in matching if gold[a] >= gold[b]], "gold": gold,
            "rouge_l": [rouge_l(t, sentence) for t in texts],
            "coverage": [keyword_coverage(t, keywords) for t in texts]}


def preference_pairs(groups, per_group: int, margin: float, rng: random.Random) -> list[tuple[str, str, str]]:
    """(prompt, better, worse) pairs: per prompt, its matching pairs, every pair of two dLLM samples
    whose gold scores differ by more than ``margin``, and ``per_group`` other such pairs."""
    pairs = []
    for g in groups:
        texts, gold, first_sample = g["texts"], g["gold"], len(g["texts"]) - g["num_samples"]
        ranked = [(a, b) for a in range(len(texts)) for b in range(len(texts)) if gold[a] > gold[b] + margin]
        between_samples = [(a, b) for a, b in ranked if a >= first_sample and b >= first_sample]
        others = [pair for pair in ranked if pair not in between_samples and pair not in g["matching"]]
        for a, b in g["matching"] + between_samples + rng.sample(others, min(per_group, len(others))):
            pairs.append((g["prompt"], texts[a], texts[b]))
    return pairs


def chat_ids(tokenizer, prompt: str, response: str) -> list[int]:
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))


def train_reward(model, groups, tokenizer, args, epochs: int, seed: int) -> dict:
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.reward_lr, weight_decay=0.01)
    pairs = [p for _ in range(epochs) for p in preference_pairs(groups, args.pairs_per_group, MARGIN, rng)]
    rng.shuffle(pairs)
    cache: dict[tuple[str, str], list[int]] = {}
    steps = math.ceil(len(pairs) / args.batch_size)
    losses, accuracies = [], []
    model.train()
    for step in range(steps):
        batch = pairs[step * args.batch_size:(step + 1) * args.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, args.reward_lr)
        rows = [(p, good) for p, good, _ in batch] + [(p, bad) for p, _, bad in batch]
        ids, mask = left_pad([cache.setdefault(row, chat_ids(tokenizer, *row)) for row in rows],
                             tokenizer.pad_token_id)
        scores = last_column_scores(model, ids, mask)
        chosen, rejected = scores[: len(batch)], scores[len(batch):]
        loss = bradley_terry_loss(chosen, rejected)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        accuracies.append((chosen > rejected).float().mean().item())
        if (step + 1) % 100 == 0 or step == 0:
            log(f"reward step {step + 1}/{steps} loss {sum(losses[-100:]) / len(losses[-100:]):.3f} "
                f"acc {sum(accuracies[-100:]) / len(accuracies[-100:]):.3f}")
    model.eval()
    return {"pairs": len(pairs), "steps": steps, "first_loss": losses[0],
            "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "final_train_accuracy": sum(accuracies[-50:]) / len(accuracies[-50:])}


def guided_samples(dllm_dir: Path, reward_dir: Path, prompts: list[tuple[str, str]], seed: int) -> list[list[str]]:
    """EntRGi's answers (the default method and K) to ``prompts`` = [(id, prompt)], through the
    package's own runner: what guidance makes of this reward model."""
    from hydra import compose, initialize_config_dir

    from entrgi.bookkeeping.storage import read_jsonl
    from entrgi.run import CONF_DIR, run

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "prompts.jsonl"
        path.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in prompts))
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[
                "method=entrgi", f"seed={seed}", f"model.path={dllm_dir}", f"reward.path={reward_dir}",
                "benchmark=jsonl", f"benchmark.path={path}", "benchmark.id_field=id", "logger=none",
                "batch_size=8", f"baseline.cache_dir={folder}/baselines"])
        run(cfg, Path(folder) / "job")
        # keyed by text: the runner answers a prompt repeated under two ids once
        answers = {r["prompt"]: r["responses"] for r in read_jsonl(Path(folder) / "job" / "results.jsonl")}
    return [answers[p] for _, p in prompts]


@torch.no_grad()
def held_out_diagnostics(model, tokenizer, groups) -> dict:
    """How the reward model ranks held-out candidates, against the gold score and the judge.

    ``agreement_*``: how often it orders two candidates as the gold score does (pairs whose gold
    differs by more than the margin). ``pick_*``: the judge's ROUGE-L and the keyword coverage of
    the sample it ranks first among the dLLM's samples (what best-of-K picks), against a random
    sample and the best one.
    """
    agree = {"all": [0, 0], "samples": [0, 0]}
    picks = {f"{what}_{metric}": [] for what in ("random", "reward_pick", "best") for metric in ("rouge_l", "coverage")}
    for g in groups:
        ids, mask = left_pad([chat_ids(tokenizer, g["prompt"], t) for t in g["texts"]], tokenizer.pad_token_id)
        scores = last_column_scores(model, ids, mask).tolist()
        first_sample = len(g["texts"]) - g["num_samples"]
        for a in range(len(scores)):
            for b in range(len(scores)):
                if g["gold"][a] > g["gold"][b] + MARGIN:
                    for kind in ("all", "samples") if min(a, b) >= first_sample else ("all",):
                        agree[kind][0] += scores[a] > scores[b]
                        agree[kind][1] += 1
        samples = range(first_sample, len(scores))
        pick = max(samples, key=lambda i: scores[i])
        for metric in ("rouge_l", "coverage"):
            values = [g[metric][i] for i in samples]
            picks[f"random_{metric}"].append(sum(values) / len(values))
            picks[f"reward_pick_{metric}"].append(g[metric][pick])
            picks[f"best_{metric}"].append(max(values))
    out = {f"agreement_{kind}": hits / max(total, 1) for kind, (hits, total) in agree.items()}
    out.update({key: sum(values) / len(values) for key, values in picks.items()})
    return out


def model_card(record: dict, dllm_config, reward_config) -> str:
    d, r, t, a = record["dllm"], record["reward"], record["timings_s"], record["args"]
    h, h1 = r["held_out"], r["held_out_round_1"]
    return f"""# The embedded tiny stack (`tiny-dllm`, `tiny-reward`)

Built by `python scripts/train_tiny.py` (arguments: {", ".join(f"{k}={v}" for k, v in a.items() if k != "out")}).
A testbed for reward guidance, not a useful assistant. The task is documentation under a
verifiable constraint (as in IFEval): "Using the words file and process, say what `os.WCOREDUMP`
does." A good answer uses both words; the reference answer is the documentation sentence they
came from.

## Data (PSF licence)
CPython {record["python"]}'s own documentation, read from the interpreter (`entrgi/testbed/corpus.py`):
sentences ({MIN_WORDS}-{MAX_WORDS} words, at most {MAX_CHARS} characters) of the docstrings of public
functions of {len(MODULES)} standard-library modules, of their classes' methods, of builtin types'
methods and builtin functions, and of the language reference's topics (`pydoc_data.topics`).
The keywords are {NUM_KEYWORDS} distinct words of the sentence from a fixed vocabulary: the
{len(keyword_vocabulary())} content words (4+ letters, not among the commonest) found in the most training
sentences (`entrgi.testbed.corpus.keyword_vocabulary`), in random order.

- Held out (`tiny-prompts.jsonl`, {record["held_out_prompts"]} prompts): the first usable sentence of every
  {HELD_OUT_EVERY}th documented module-level function, keywords drawn once by the function's name. No sentence
  of these functions is trained on.
- dLLM training: {record["dllm_sentences"]} sentences, fresh keywords every time a sentence is drawn.
- Reward-only: the {record["reward_only_sentences"]} sentences of every {HELD_OUT_EVERY}th remaining name, which the dLLM
  never trains on, so its samples there look like its samples on held-out prompts.

The tokenizer (byte-level BPE, vocabulary {a["vocab_size"]}) is trained on `pydoc_data.topics` and
the training docstrings. The data depend on the Python version: rebuild with the same version
to reproduce these weights.

## tiny-dllm: masked diffusion LM
Qwen2 ({dllm_config.num_hidden_layers} layers, hidden {dllm_config.hidden_size}, {record["parameters"]["tiny-dllm"] / 1e6:.2f}M parameters, tied embeddings),
run with bidirectional attention and Dream-style shifted logits. Trained from scratch for
{a["dllm_steps"]} AdamW steps (batch {a["batch_size"]}, peak lr {a["dllm_lr"]}, warm-up then cosine) on
chat-formatted (prompt, sentence) pairs with the masked-diffusion objective: per sequence
t ~ U(0.001, 1), each response token masked with probability t, loss = cross-entropy of the
masked tokens x 1/t / {a["gen_length"]}; prompt tokens never masked. The response is the sentence,
`<|im_end|>`, then `<|endoftext|>` padding to {a["gen_length"]} tokens.

| | masked-diffusion loss |
| --- | --- |
| first step | {d["first_loss"]:.3f} |
| last 100 steps (train) | {d["final_loss"]:.3f} |
| held-out prompts | {d["held_out_loss"]:.3f} |

Its unguided samples on the held-out prompts ({a["samples"]} per prompt, {a["sample_steps"]} denoising steps):
mean ROUGE-L against the reference {d["held_out_sample_rouge_l"]:.3f}, mean keyword coverage {d["held_out_sample_coverage"]:.3f}.

## tiny-reward: reward model
{type(reward_config).__name__.replace('Config', 'ForSequenceClassification')} ({reward_config.num_hidden_layers} layers, hidden {reward_config.hidden_size}, {record["parameters"]["tiny-reward"] / 1e6:.2f}M parameters), one
label, the score read at the last token of the chat-formatted (prompt, response), exactly as
`entrgi.reward.RewardModel.score_texts` does (causal attention, as a reward model runs). It is
trained from scratch, with the dLLM's tokenizer: started from the dLLM's blocks, it learned to
check the asked words far more slowly.

Trained with a Bradley-Terry loss (batch {a["batch_size"]}, peak lr {a["reward_lr"]}, warm-up then cosine each round).
The gold score of a response is the share of the asked words it uses plus its bigram F1 against
the sentence; a pair is a preference when the gold scores differ by more than {MARGIN}, or when
two candidates differ only in the asked words (the matching pairs below).

- Round 1, {a["reward_epochs"]} epochs ({r["pairs"]} pairs): per prompt, the sentence; the sentence with one or
  two asked words dropped, with one replaced by a word the prompt did not ask for, with its words
  shuffled, with three words replaced by unasked words; the bare keywords; another sentence; and
  for the reward-only sentences {a["samples"]} unguided dLLM samples, each also edited: one word
  replaced by an asked word, the same word by an unasked one, two words by unasked ones. Pairs:
  the matching pairs (the sentence over it without an asked word, with an unasked word in its
  place, or stuffed with unasked words; an edited sample with an asked word over the same with an
  unasked word and over the sample; a sample over it stuffed with unasked words), every ranked
  pair of two samples, and {a["pairs_per_group"]} other ranked pairs per prompt.
- Then {a["guided_rounds"]} round(s) on its own guided answers: EntRGi (the default method, K = 4) answers the
  reward-only prompts with the current reward model, and one epoch trains on the same kinds of
  pairs with those answers among the samples, plus a third of round 1's prompts. Following a
  reward model's gradient finds answers it overrates that best-of-K never draws (words it likes,
  stuffed anywhere); this is where it must learn better. Last round: {r[f"round_{1 + int(a['guided_rounds'])}"]["pairs"]} pairs.

The judges are applied to held-out prompts only: the keyword judge uses the same coverage rule
as the gold score, on prompts and answers the reward model never saw; ROUGE-L, the other judge,
is not used in training.

| | value |
| --- | --- |
| round 1: BT loss, first step / last 50 steps | {r["first_loss"]:.3f} / {r["final_loss"]:.3f} |
| round 1: train pair accuracy, last 50 steps | {r["final_train_accuracy"]:.3f} |
| held-out: agrees with the gold score, all candidate pairs (after round 1) | {h["agreement_all"]:.3f} ({h1["agreement_all"]:.3f}) |
| held-out: agrees with the gold score, pairs of dLLM samples (after round 1) | {h["agreement_samples"]:.3f} ({h1["agreement_samples"]:.3f}) |

On the held-out prompts, the sample it ranks first among the dLLM's {a["samples"]} (what best-of-{a["samples"]} picks),
against a random sample and the best one:

| | random sample | reward model's pick | best sample |
| --- | --- | --- | --- |
| ROUGE-L (a judge) | {h["random_rouge_l"]:.3f} | {h["reward_pick_rouge_l"]:.3f} | {h["best_rouge_l"]:.3f} |
| keyword coverage (a judge) | {h["random_coverage"]:.3f} | {h["reward_pick_coverage"]:.3f} | {h["best_coverage"]:.3f} |

## Cost
{t["total_s"]:.0f} s wall-clock in all ({t["dllm_train_s"]:.0f} s dLLM training, {t["sampling_s"]:.0f} s sampling,
{t["reward_train_s"]:.0f} s reward-model training, {t["guided_sampling_s"]:.0f} s guided sampling)
on a shared 2-core CPU, {a["threads"]} torch thread(s), torch {record["torch"]}. Full numbers: `training.json`.

## Licence
Data: Python Software Foundation License (CPython documentation). Weights: trained here from
scratch, shipped under the package's licence.
"""


# -- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "entrgi" / "assets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--gen-length", type=int, default=32, help="response length the dLLM is trained for")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dllm-steps", type=int, default=6000)
    parser.add_argument("--dllm-lr", type=float, default=2e-3)
    parser.add_argument("--samples", type=int, default=4, help="dLLM samples per reward-only sentence")
    parser.add_argument("--sample-steps", type=int, default=16)
    parser.add_argument("--reward-epochs", type=int, default=3)
    parser.add_argument("--pairs-per-group", type=int, default=8)
    parser.add_argument("--reward-lr", type=float, default=1e-3)
    parser.add_argument("--guided-rounds", type=int, default=2,
                        help="rounds of reward-model training on its own guided answers")
    parser.add_argument("--reuse-dllm", action="store_true", help="retrain only the reward model")
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared machine")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started, reused_s = time.perf_counter(), 0.0
    timings = {}

    if args.reuse_dllm:  # keep the shipped tokenizer and dLLM, retrain the reward model only
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.out / "tiny-dllm")
        dllm_model = AutoModelForCausalLM.from_pretrained(args.out / "tiny-dllm").eval()
        previous = json.loads((args.out / "training.json").read_text())
        args.dllm_steps, args.dllm_lr = int(previous["args"]["dllm_steps"]), float(previous["args"]["dllm_lr"])
    else:
        log("tokenizer")
        tokenizer = build_tokenizer(args.vocab_size)
        dllm_model = build_models(tokenizer, args.seed)[0]
        tokenizer = runtime_tokenizer(tokenizer, dllm_model.config)
    fits = [(name, text, response_ids(tokenizer, text, args.gen_length)) for name, text in training_sentences()]
    dllm_sentences, reward_only = split_reward_only([s for s in fits if s[2] is not None], HELD_OUT_EVERY)
    held_out = [p for p in held_out_prompts() if response_ids(tokenizer, p["reference"], args.gen_length)]
    held_examples = [(prompt_ids(tokenizer, p["prompt"]), response_ids(tokenizer, p["reference"], args.gen_length))
                     for p in held_out]
    log(f"{len(dllm_sentences)} dLLM sentences, {len(reward_only)} reward-only, {len(held_out)} held-out prompts")

    t0 = time.perf_counter()
    if args.reuse_dllm:
        dllm_stats = {k: previous["dllm"][k] for k in ("first_loss", "final_loss")}
        timings["dllm_train_s"] = reused_s = previous["timings_s"]["dllm_train_s"]
    else:
        dllm_stats = train_dllm(dllm_model, dllm_sentences, tokenizer, args)
        timings["dllm_train_s"] = time.perf_counter() - t0
    dllm_stats["held_out_loss"] = diffusion_eval_loss(dllm_model, held_examples, tokenizer, args.seed)
    log(f"dllm: {dllm_stats}")

    t0 = time.perf_counter()
    dllm = DiffusionLM(dllm_model, tokenizer, tokenizer.convert_tokens_to_ids(MASK),
                       tokenizer.convert_tokens_to_ids([EOS, PAD]), shift_logits=True, max_length=512)
    sampler = SamplerConfig(gen_length=args.gen_length, steps=args.sample_steps)
    rng = random.Random(args.seed)
    reward_keywords = [pick_keywords(text, rng) for _, text, _ in reward_only]
    prompts = [question(name, kw) for (name, *_), kw in zip(reward_only, reward_keywords)]
    prompt_keys = [f"{name}/{i}" for i, (name, *_) in enumerate(reward_only)]  # a name may have several sentences
    samples_file = args.out / "dllm-samples.json"  # written once per dLLM: a reward-model rerun reuses them
    if args.reuse_dllm and samples_file.exists():
        reward_samples, held_samples = json.loads(samples_file.read_text())
        timings["sampling_s"] = previous["timings_s"]["sampling_s"]
        reused_s += timings["sampling_s"]
    else:
        reward_samples = sample_texts(dllm, prompts, prompt_keys, args.samples, sampler, args.seed)
        held_samples = sample_texts(dllm, [p["prompt"] for p in held_out], [p["id"] for p in held_out],
                                    args.samples, sampler, args.seed + 1)
        timings["sampling_s"] = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        dllm_model.save_pretrained(args.out / "tiny-dllm")
        tokenizer.save_pretrained(args.out / "tiny-dllm")
        samples_file.write_text(json.dumps([reward_samples, held_samples]))
    dllm_stats["held_out_sample_rouge_l"] = sum(rouge_l(s, p["reference"]) for p, ss in zip(held_out, held_samples)
                                                for s in ss) / (len(held_out) * args.samples)
    dllm_stats["held_out_sample_coverage"] = sum(keyword_coverage(s, p["keywords"]) for p, ss in
                                                 zip(held_out, held_samples) for s in ss) / len(held_out) / args.samples
    log(f"held-out samples for {held_out[1]['prompt']!r}: {held_samples[1]}")

    t0 = time.perf_counter()
    # from scratch: started from the dLLM's blocks it learned to check the asked words far more slowly
    reward_model = build_models(tokenizer, args.seed)[1]
    texts = [text for _, text, _ in dllm_sentences + reward_only]
    groups = [reward_group(name, text, pick_keywords(text, rng), rng.choice(texts), [], rng)
              for name, text, _ in dllm_sentences]
    groups += [reward_group(name, text, kw, rng.choice(texts), samples, rng)
               for (name, text, _), kw, samples in zip(reward_only, reward_keywords, reward_samples)]
    held_groups = [reward_group(p["id"], p["reference"], p["keywords"], rng.choice(texts), samples, rng)
                   for p, samples in zip(held_out, held_samples)]
    reward_stats = train_reward(reward_model, groups, tokenizer, args, args.reward_epochs, args.seed + 1)
    reward_stats["held_out_round_1"] = held_out_diagnostics(reward_model, tokenizer, held_groups)
    log(f"reward round 1: {reward_stats}")
    timings["reward_train_s"] = time.perf_counter() - t0

    # Later rounds: what guidance makes of the current model, on the reward-only prompts, ranked by
    # the gold score like any other answer. Following a reward model's gradient finds answers it
    # overrates that best-of-K never draws; this is where it must learn better.
    timings["guided_sampling_s"] = 0.0
    guided = [[] for _ in reward_only]
    for round_ in range(2, 2 + args.guided_rounds):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            reward_model.save_pretrained(Path(folder))
            tokenizer.save_pretrained(Path(folder))
            new = guided_samples(args.out / "tiny-dllm", Path(folder), list(zip(prompt_keys, prompts)),
                                 args.seed + round_)
        guided = [old + more for old, more in zip(guided, new)]
        timings["guided_sampling_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        groups_now = [reward_group(name, text, kw, rng.choice(texts), samples + more, rng) for (name, text, _), kw,
                      samples, more in zip(reward_only, reward_keywords, reward_samples, guided)]
        reward_stats[f"round_{round_}"] = train_reward(reward_model, groups_now + rng.sample(groups, len(groups) // 3),
                                                       tokenizer, args, 1, args.seed + round_ + 1)
        timings["reward_train_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    reward_stats["held_out"] = held_out_diagnostics(reward_model, tokenizer, held_groups)
    timings["reward_train_s"] += time.perf_counter() - t0
    log(f"reward: {reward_stats}")
    # a reused dLLM's training and sampling time still belong to the stack's cost
    timings["total_s"] = time.perf_counter() - started + reused_s

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tiny-prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in held_out))
    sizes = {}
    for name, model in (("tiny-dllm", dllm_model), ("tiny-reward", reward_model)):
        model.save_pretrained(args.out / name)
        tokenizer.save_pretrained(args.out / name)
        sizes[name] = sum(p.numel() for p in model.parameters())
    record = {"args": {k: str(v) for k, v in vars(args).items()}, "python": platform.python_version(),
              "torch": torch.__version__, "dllm_sentences": len(dllm_sentences),
              "reward_only_sentences": len(reward_only), "held_out_prompts": len(held_out),
              "parameters": sizes, "dllm": dllm_stats, "reward": reward_stats, "timings_s": timings}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / "MODEL_CARD.md").write_text(model_card(record, dllm_model.config, reward_model.config))
    log(f"wrote {args.out} in {timings['total_s']:.0f} s")


if __name__ == "__main__":
    main()
