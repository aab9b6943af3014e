"""The restructured code draws the same samples as the recorded reference (tests/fixtures/golden.json)."""

import json
from pathlib import Path

import pytest
from conftest import compose_config

from entrgi.run import run

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden.json").read_text())
MADE_WITH = GOLDEN.pop("made_with")  # the torch and transformers versions of the run that recorded the cases
TRACED = ("entropy_weight", "guided_reward", "estimate_reward", "effective_particles")


def installed_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def compare(records: list[dict], expected: dict) -> None:
    assert [r["id"] for r in records] == [r["id"] for r in expected["records"]]
    for got, want in zip(records, expected["records"]):
        assert got["responses"] == want["responses"]
        assert got["best_index"] == want["best_index"]
        assert got["rewards"] == pytest.approx(want["rewards"], abs=1e-5)
        assert got["trace"]["step"] == want["trace"]["step"]
        for name in TRACED:
            assert (name in got["trace"]) == (name in want["trace"])
            if name in want["trace"]:
                assert [v is None for v in got["trace"][name]] == [v is None for v in want["trace"][name]]
                assert [v for v in got["trace"][name] if v is not None] == pytest.approx(
                    [v for v in want["trace"][name] if v is not None], abs=1e-4)


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_samples_match_the_recorded_reference(case, tmp_path):
    expected = GOLDEN[case]
    cfg = compose_config(*expected["overrides"])
    cfg.baseline.cache_dir = str(tmp_path / "baselines")
    run(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    check(records, expected, installed_versions())


def check(records: list[dict], expected: dict, installed: dict[str, str]) -> None:
    """``compare``, whose failure names a difference between the recorded and the installed versions."""
    try:
        compare(records, expected)
    except AssertionError as error:
        if installed != MADE_WITH:
            raise AssertionError(f"golden.json was recorded with {MADE_WITH} and this is {installed}: the version "
                                 f"change may be what moved the samples (re-record at a reference commit with "
                                 f"python tests/fixtures/make_golden.py --all)\n{error}") from error
        raise


def test_a_mismatch_after_a_version_bump_says_so():
    expected = GOLDEN["bon"]
    moved = json.loads(json.dumps(expected["records"]))
    moved[0]["responses"][0] += " moved"
    with pytest.raises(AssertionError, match=r"recorded with .* and this is \{'torch': '0.0'"):
        check(moved, expected, {**MADE_WITH, "torch": "0.0"})
    with pytest.raises(AssertionError) as same_versions:
        check(moved, expected, dict(MADE_WITH))
    assert "recorded with" not in str(same_versions.value)
    check(expected["records"], expected, {**MADE_WITH, "torch": "0.0"})  # no mismatch, no failure
