"""Offline text from CPython's standard library (PSF licence) for the embedded tiny stack.

The task is documentation under a verifiable constraint, as in IFEval: "Using the words file and
process, say what `os.WCOREDUMP` does." A good answer is a documentation sentence that uses both
words; the reference is the docstring sentence they were taken from. The words come from a small
vocabulary of frequent documentation words (``keyword_vocabulary``), so a tiny reward model can
learn to check them and a tiny dLLM to use them on functions they never saw. Two held-out judges
score answers: whether they use the words (``entrgi.evaluation.judges.keywords.KeywordJudge``) and ROUGE-L against
the reference.

The sentences of every fifth documented module-level function are held out: the first usable
sentence of each is the built-in benchmark, and none of their sentences is trained on. Everything
is read from the running interpreter, so no download is needed (and the text depends on the
Python version, which the model card records). The text is read in a fresh interpreter:
libraries imported later patch some functions (torch replaces ``inspect.getfile``), which would
otherwise change the corpus.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import inspect
import json
import os
import random
import re
import subprocess
import sys

MODULES = (
    "os", "os.path", "shutil", "json", "re", "math", "statistics", "random", "string", "textwrap",
    "itertools", "functools", "collections", "heapq", "bisect", "datetime", "time", "calendar",
    "pathlib", "glob", "fnmatch", "tempfile", "csv", "zlib", "gzip", "base64", "hashlib", "secrets",
    "urllib.parse", "html", "copy", "pprint", "operator", "difflib", "inspect", "types", "struct",
    "binascii", "unicodedata", "locale", "platform", "fractions", "decimal", "uuid", "shlex", "zipfile",
)
BUILTIN_TYPES = (str, bytes, bytearray, list, tuple, dict, set, frozenset, int, float, complex)
HELD_OUT_EVERY = 5
NUM_KEYWORDS = 2
VOCABULARY_SIZE = 96
MIN_WORDS, MAX_WORDS, MAX_CHARS = 6, 18, 100  # a sentence must fit the sampler's 32-token answer
# Words too common in documentation to constrain an answer.
COMMON_WORDS = frozenset(
    "also been does done each else from have into itself many more most must only other over same should such "
    "than that their them then there these they this those were what when where which while will with would "
    "your return returns returned given true false none".split())


def _clean(obj, min_words: int) -> str | None:
    doc = " ".join((inspect.getdoc(obj) or "").split())
    return doc if len(doc.split()) >= min_words else None


def documented_functions(min_words: int = 8) -> list[tuple[str, str]]:
    """``(qualified name, cleaned docstring)`` of public functions with real documentation."""
    found = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(vars(module)):
            obj = getattr(module, name)
            if name.startswith("_") or not callable(obj) or inspect.isclass(obj):
                continue
            if getattr(obj, "__module__", module_name) not in (module_name, None) and not module_name.startswith("os"):
                continue
            doc = _clean(obj, min_words)
            if doc:
                found.append((f"{module_name}.{name}", doc))
    return found


def documented_methods(min_words: int = 8) -> list[tuple[str, str]]:
    """Documented public methods of the modules' classes and of builtin types, and builtin functions."""
    classes = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        classes += [(f"{module_name}.{name}", obj) for name, obj in sorted(vars(module).items())
                    if not name.startswith("_") and inspect.isclass(obj) and obj.__module__ == module_name]
    classes += [(cls.__name__, cls) for cls in BUILTIN_TYPES]
    found = []
    for prefix, cls in classes:
        for name in sorted(vars(cls)):
            method = getattr(cls, name, None)
            doc = None if name.startswith("_") or not callable(method) else _clean(method, min_words)
            if doc:
                found.append((f"{prefix}.{name}", doc))
    for name in sorted(vars(builtins)):
        obj = getattr(builtins, name)
        if not name.startswith("_") and callable(obj) and not inspect.isclass(obj):
            doc = _clean(obj, min_words)
            if doc:
                found.append((name, doc))
    return found


@functools.lru_cache(maxsize=None)
def snapshot() -> dict[str, list[tuple[str, str]]]:
    """``documented_functions()`` and ``documented_methods()`` as a fresh interpreter sees them."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-m", "entrgi.testbed.corpus"], capture_output=True, text=True, check=True,
                         env=env).stdout
    return {kind: [tuple(pair) for pair in pairs] for kind, pairs in json.loads(out).items()}


# -- the task --------------------------------------------------------------------------------------

def words(text: str) -> list[str]:
    """Lower-cased word tokens, as ``entrgi.judges.words`` reads text (not imported: it would bring
    torch into the interpreter that reads the corpus)."""
    return re.findall(r"\w+", text.lower())


def _split(doc: str) -> list[str]:
    """The docstring's sentences short enough for one answer."""
    return [s for s in re.split(r"(?<=[.!?])\s+", doc)
            if MIN_WORDS <= len(s.split()) <= MAX_WORDS and len(s) <= MAX_CHARS]


def _held_out_functions(every: int) -> list[tuple[str, str]]:
    return [f for i, f in enumerate(snapshot()["functions"]) if i % every == 0]


def _training_docs(every: int) -> list[tuple[str, str]]:
    """``(name, docstring)`` of every function not held out, the methods and builtins, then the
    language reference's topics (``pydoc_data.topics``, named by topic)."""
    from pydoc_data.topics import topics

    held_out = {name for name, _ in _held_out_functions(every)}
    corpus = snapshot()
    docs = [f for i, f in enumerate(corpus["functions"]) if i % every] + corpus["methods"]
    docs += [(key, " ".join(topics[key].split())) for key in sorted(topics)]
    return [(name, doc) for name, doc in docs if name not in held_out]


@functools.lru_cache(maxsize=None)
def keyword_vocabulary(every: int = HELD_OUT_EVERY) -> tuple[str, ...]:
    """The words a prompt may ask for: the ``VOCABULARY_SIZE`` content words (4+ letters, not among
    the commonest) found in the most training sentences. A small, frequent vocabulary is what a tiny
    model can learn to check and to use; the held-out text plays no part in choosing it."""
    counts: dict[str, int] = {}
    for _, doc in _training_docs(every):
        for sentence in _split(doc):
            for w in set(words(sentence)):
                if w.isalpha() and len(w) >= 4 and w not in COMMON_WORDS:
                    counts[w] = counts.get(w, 0) + 1
    return tuple(sorted(counts, key=lambda w: (-counts[w], w))[:VOCABULARY_SIZE])


def keyword_choices(sentence: str) -> list[str]:
    """The sentence's distinct words that a prompt may ask for."""
    vocabulary = set(keyword_vocabulary())
    return list(dict.fromkeys(w for w in words(sentence) if w in vocabulary))


def sentences(doc: str) -> list[str]:
    """The docstring's sentences that make a task: short enough for an answer, with enough keywords."""
    return [s for s in _split(doc) if len(keyword_choices(s)) >= NUM_KEYWORDS]


def pick_keywords(sentence: str, rng: random.Random) -> list[str]:
    return rng.sample(keyword_choices(sentence), NUM_KEYWORDS)


def question(name: str, keywords: list[str]) -> str:
    # each keyword follows a space, so it is the same token as in the middle of an answer
    return f"Using the words {' and '.join(keywords)}, say what `{name}` does."


def held_out_prompts(every: int = HELD_OUT_EVERY) -> list[dict]:
    """The built-in benchmark: the first usable sentence of every ``every``-th documented function,
    with keywords drawn by a generator seeded by the function's name (never trained on)."""
    prompts = []
    for name, doc in _held_out_functions(every):
        usable = sentences(doc)
        if usable:
            keywords = pick_keywords(usable[0], random.Random(name))
            prompts.append({"id": name, "prompt": question(name, keywords), "reference": usable[0],
                            "keywords": keywords})
    return prompts


def training_sentences(every: int = HELD_OUT_EVERY) -> list[tuple[str, str]]:
    """``(name, sentence)`` of every function not held out, method, builtin and language-reference
    topic: no held-out function's sentence, by name or by text."""
    held_sentences = {s for _, doc in _held_out_functions(every) for s in re.split(r"(?<=[.!?])\s+", doc)}
    found, seen = [], set()
    for name, doc in _training_docs(every):
        for sentence in sentences(doc):
            if sentence not in held_sentences and (name, sentence) not in seen:
                seen.add((name, sentence))
                found.append((name, sentence))
    return found


def training_prompts(every: int = HELD_OUT_EVERY) -> list[dict]:
    """The task over every training sentence (never a held-out function's), for post-training: the
    keywords of each drawn by a generator seeded by its name and index."""
    prompts = []
    for i, (name, sentence) in enumerate(training_sentences(every)):
        keywords = pick_keywords(sentence, random.Random(f"{name}/{i}"))
        prompts.append({"id": f"{name}/{i}", "prompt": question(name, keywords), "reference": sentence,
                        "keywords": keywords})
    return prompts


if __name__ == "__main__":
    json.dump({"functions": documented_functions(), "methods": documented_methods()}, sys.stdout)
