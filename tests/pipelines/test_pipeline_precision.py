"""analyze --precision reaches the networks the pipelines run (issue 12, item 11)."""

from __future__ import annotations

import json

import pytest

from medimg.cli.main import main


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_analyze_precision_reaches_the_hippocampus_network(tmp_path, monkeypatch, precision):
    import torch

    from medimg.pipelines.demo import hippocampus_sample_path

    seen = []
    real = torch.autocast

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dtype"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    out = tmp_path / "out"
    assert main(["analyze", str(hippocampus_sample_path()), "-o", str(out), "--precision", precision, "-q"]) == 0
    record = json.loads((out / "measurements.json").read_text())
    assert record["pipeline"] == "hippocampus"
    assert json.dumps(record).count(f'"precision": "{precision}"') >= 1
    if precision == "fp32":
        assert seen == []  # no autocast at all
    else:
        assert seen and set(seen) == {torch.bfloat16}


def test_analyze_rejects_unknown_precision(tmp_path, capsys):
    from medimg.pipelines.demo import hippocampus_sample_path

    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(hippocampus_sample_path()), "-o", str(tmp_path / "o"), "--precision", "fp16"])
    assert exc.value.code == 2
    assert not (tmp_path / "o").exists()
