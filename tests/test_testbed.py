"""The embedded testbed: its corpus split, the lexical judge, the training objectives and the shipped weights."""

import json
import math
import random
import re

import pytest
import torch
from omegaconf import OmegaConf

from entrgi.errors import ConfigError
from entrgi.evaluation.benchmarks import ASSETS, Prompt
from entrgi.evaluation.judges import make_judge
from entrgi.evaluation.judges.keywords import KeywordJudge
from entrgi.evaluation.judges.lexical import LexicalJudge, ngram_f1, rouge_l
from entrgi.models.batching import left_pad
from entrgi.models.diffusion import DiffusionLM
from entrgi.testbed.corpus import held_out_prompts, keyword_vocabulary, question, training_sentences
from entrgi.training.losses import bradley_terry_loss, last_column_scores, mask_responses, masked_diffusion_loss

# -- the corpus ------------------------------------------------------------------------------------


def test_training_split_shares_no_function_or_sentence_with_the_held_out_prompts():
    held_out, train = held_out_prompts(), training_sentences()
    assert len(held_out) >= 64 and len(train) > 5 * len(held_out)
    assert not {p["id"] for p in held_out} & {name for name, _ in train}
    assert not {p["reference"] for p in held_out} & {sentence for _, sentence in train}


def test_every_held_out_prompt_asks_for_two_vocabulary_words_that_its_reference_uses():
    vocabulary, judge = set(keyword_vocabulary()), KeywordJudge()
    for p in held_out_prompts():
        assert len(p["keywords"]) == 2 and set(p["keywords"]) <= vocabulary
        assert p["prompt"] == question(p["id"], p["keywords"])
        assert judge.score([Prompt(p["id"], p["prompt"])], [p["reference"]]) == [1.0]


def test_the_shipped_benchmark_is_the_held_out_split_with_references():
    shipped = [json.loads(line) for line in (ASSETS / "tiny-prompts.jsonl").read_text().splitlines()]
    assert len(shipped) >= 64 and all(p["reference"] and p["id"] in p["prompt"] for p in shipped)
    training = json.loads((ASSETS / "training.json").read_text())
    assert training["held_out_prompts"] == len(shipped)


# -- the lexical judge -----------------------------------------------------------------------------


def test_lexical_metrics_on_hand_computed_examples():
    # LCS "the cat on the mat" = 5 of 6 words each side
    assert rouge_l("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    assert ngram_f1("a b c", "a b d") == pytest.approx(2 / 3)
    assert ngram_f1("a b c", "a b d", n=2) == pytest.approx(0.5)  # "a b" of two bigrams each side
    assert ngram_f1("a a a", "a b") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))  # clipped counts
    assert rouge_l("c b a", "a b c") == pytest.approx(1 / 3)  # order matters, unlike unigram F1
    assert rouge_l("", "a b") == rouge_l("x y", "a b") == 0.0


def test_lexical_judge_scores_pairs_against_each_prompts_reference():
    judge = make_judge(OmegaConf.create({"type": "lexical", "name": "lexical", "metric": "rouge_l"}))
    prompts = [Prompt("a", "q1", "Return the square root of x."), Prompt("b", "q2", "Join two paths.")]
    scores = judge.score(prompts, ["Return the square root of x.", "Return the square root of x."])
    assert scores[0] == pytest.approx(1.0) and scores[1] == 0.0


def test_lexical_judge_needs_references_and_a_known_metric():
    with pytest.raises(ConfigError, match="reference_field"):
        LexicalJudge().score([Prompt("a", "q", None)], ["text"])
    with pytest.raises(ConfigError, match="eval_reward.metric"):
        LexicalJudge(metric="bleu")


def test_keyword_judge_scores_the_share_of_the_asked_words_used_as_whole_words():
    judge = make_judge(OmegaConf.create({"type": "keywords", "name": "keywords"}))
    prompt = Prompt("a", question("os.fork", ["process", "file"]))
    answers = ["Fork a child PROCESS and open a file.", "Fork a child process.", "Processes and files.", ""]
    assert judge.score([prompt] * 4, answers) == [1.0, 0.5, 0.0, 0.0]


def test_keyword_judge_names_the_fix_for_a_prompt_or_pattern_it_cannot_read():
    with pytest.raises(ConfigError, match="eval_reward.pattern"):
        KeywordJudge().score([Prompt("q7", "What does `os.fork` do?")], ["text"])
    with pytest.raises(ConfigError, match="no group"):
        KeywordJudge(pattern="Using the words")
    with pytest.raises(ConfigError, match="not a regular expression"):
        KeywordJudge(pattern="(unclosed")


# -- the training objectives -----------------------------------------------------------------------


def test_masking_masks_where_the_draw_is_below_the_ratio_and_never_elsewhere():
    response = torch.tensor([[5, 6, 7, 8], [5, 6, 7, 8]])
    uniforms = torch.tensor([[0.1, 0.5, 0.9, 0.3], [0.1, 0.5, 0.9, 0.3]])
    noised, masked = mask_responses(response, torch.tensor([0.4, 1.0]), uniforms, mask_id=99)
    assert masked.tolist() == [[True, False, False, True], [True, True, True, True]]
    assert noised.tolist() == [[99, 6, 7, 99], [99, 99, 99, 99]]


def test_diffusion_loss_is_masked_cross_entropy_weighted_by_one_over_t_per_response_length():
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
    targets = torch.tensor([[0, 0, 1]])
    masked = torch.tensor([[True, False, True]])  # the middle position costs nothing
    loss = masked_diffusion_loss(logits, targets, masked, torch.tensor([0.25]))
    assert loss.item() == pytest.approx((-math.log(0.5) - math.log(0.8)) / (0.25 * 3))


def test_bradley_terry_loss_is_log_two_at_a_tie_and_falls_as_the_margin_grows():
    tie = bradley_terry_loss(torch.zeros(3), torch.zeros(3))
    assert tie.item() == pytest.approx(math.log(2))
    assert bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0])) < tie < bradley_terry_loss(
        torch.tensor([0.0]), torch.tensor([2.0]))


def test_training_forward_matches_what_the_sampler_sees(tiny_stack):
    dllm, reward = tiny_stack
    prompts = dllm.encode_prompts(["What does the Python function `math.gcd` do?", "Hi"])
    ids, mask = dllm.pad_prompts(prompts)
    response = torch.randint(4, 100, (2, 8))
    ids, mask = torch.cat([ids, response], 1), torch.cat([mask, torch.ones_like(response)], 1)
    start = ids.shape[1] - 8
    expected = dllm.logits(ids, mask)[:, start:]
    assert torch.allclose(dllm.forward(ids, mask, start), expected, atol=1e-4)

    texts = ["Return the greatest common divisor.", "no"]
    rows, row_mask = left_pad([reward.chat_ids("q", t) for t in texts], reward.tokenizer.pad_token_id)
    assert last_column_scores(reward.model, rows, row_mask).tolist() == pytest.approx(
        reward.score_texts(["q", "q"], texts), abs=1e-4)


def test_a_few_steps_of_masked_diffusion_training_lower_the_loss():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64))
    prompt = torch.randint(3, 32, (8, 4))
    response = torch.randint(3, 32, (8, 6))
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(8, generator=generator) * 0.9 + 0.1
    noised, masked = mask_responses(response, t, torch.rand(8, 6, generator=generator), mask_id=2)
    ids = torch.cat([prompt, noised], 1)

    def loss():
        logits = DiffusionLM(model, None, 2, [], shift_logits=True, max_length=64).forward(ids, torch.ones_like(ids), 4)
        return masked_diffusion_loss(logits, response, masked, t)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss().item()
    for _ in range(20):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.7 * first


# -- the shipped weights ---------------------------------------------------------------------------


def shipped_prompts():
    return [json.loads(line) for line in (ASSETS / "tiny-prompts.jsonl").read_text().splitlines()]


def test_the_shipped_dllm_has_learned_to_answer_held_out_questions(tiny_stack):
    dllm, _ = tiny_stack
    prompts = shipped_prompts()
    L = 32
    eos, pad = dllm.eos_ids
    answers = [dllm.tokenizer(p["reference"], add_special_tokens=False)["input_ids"][: L - 1] for p in prompts]
    response = torch.tensor([a + [eos] + [pad] * (L - 1 - len(a)) for a in answers])
    prompt_ids, prompt_mask = dllm.pad_prompts(dllm.encode_prompts([p["prompt"] for p in prompts]))
    generator = torch.Generator().manual_seed(0)
    t = torch.rand(len(prompts), generator=generator) * 0.9 + 0.1
    noised, masked = mask_responses(response, t, torch.rand(response.shape, generator=generator), dllm.mask_id)
    ids = torch.cat([prompt_ids, noised], 1)
    with torch.no_grad():
        logits = dllm.forward(ids, torch.cat([prompt_mask, torch.ones_like(noised)], 1), start=prompt_ids.shape[1])
    # an untrained model pays about log V = 8.3 nats per masked token (the shipped one: about 5.1)
    assert masked_diffusion_loss(logits, response, masked, t).item() < 6.0


def swapped(prompt: dict, which: int) -> str:
    """The reference with one asked word replaced by a vocabulary word the prompt did not ask for."""
    unasked = [w for w in keyword_vocabulary() if w not in prompt["keywords"]]
    other = unasked[sum(map(ord, prompt["id"])) % len(unasked)]
    return re.sub(rf"\b{prompt['keywords'][which]}\b", other, prompt["reference"], flags=re.IGNORECASE)


def test_the_shipped_reward_model_checks_the_asked_words_on_held_out_prompts(tiny_stack):
    _, reward = tiny_stack
    prompts = shipped_prompts()
    questions, references = [p["prompt"] for p in prompts], [p["reference"] for p in prompts]
    true = reward.score_texts(questions, references)
    for which in (0, 1):
        worse = reward.score_texts(questions, [swapped(p, which) for p in prompts])
        # the same sentence, as fluent, with a word the prompt did not ask for: 65 and 64 of 69 when
        # shipped (chance is 0.5); see entrgi/assets/MODEL_CARD.md
        assert sum(a > b for a, b in zip(true, worse)) / len(true) > 0.8


def test_the_shipped_reward_model_prefers_a_sentence_to_its_words_shuffled_on_held_out_prompts(tiny_stack):
    _, reward = tiny_stack
    prompts = shipped_prompts()
    rng = random.Random(0)
    shuffled = [" ".join(rng.sample(p["reference"].split(), len(p["reference"].split()))) for p in prompts]
    questions = [p["prompt"] for p in prompts]
    true = reward.score_texts(questions, [p["reference"] for p in prompts])
    worse = reward.score_texts(questions, shuffled)
    # a weaker preference (56 of 69 when shipped; chance is 0.5)
    assert sum(a > b for a, b in zip(true, worse)) / len(true) > 0.7
