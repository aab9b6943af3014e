"""The restructured code draws the same samples as the recorded reference (tests/fixtures/golden.json)."""

import json
from pathlib import Path

import pytest
from conftest import compose_config

from entrgi.run import run

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "golden.json").read_text())


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_samples_match_the_recorded_reference(case, tmp_path):
    expected = GOLDEN[case]
    cfg = compose_config(*expected["overrides"])
    cfg.baseline.cache_dir = str(tmp_path / "baselines")
    run(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in expected["records"]]
    for got, want in zip(records, expected["records"]):
        assert got["responses"] == want["responses"]
        assert got["best_index"] == want["best_index"]
        assert got["rewards"] == pytest.approx(want["rewards"], abs=1e-5)
        assert got["trace"]["step"] == want["trace"]["step"]
        for name in ("entropy_weight", "guided_reward"):
            assert (name in got["trace"]) == (name in want["trace"])
            if name in want["trace"]:
                assert [v is None for v in got["trace"][name]] == [v is None for v in want["trace"][name]]
                assert [v for v in got["trace"][name] if v is not None] == pytest.approx(
                    [v for v in want["trace"][name] if v is not None], abs=1e-4)
