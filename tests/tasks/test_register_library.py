"""The library side of registration (issue 13): the plan's JSON round trip, the task's registry entry, and
``register_images`` computing in memory (nothing written) while ``result.write(out)`` writes the command's files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from medimg.cli import main as cli_main
from medimg.core.errors import InvalidParameterError
from medimg.io import read
from medimg.tasks.register.pairs import RegisterOptions, register_images
from medimg.tasks.register.plan import RegisterPlan
from medimg.tasks.register.writer import RegisterResult
from medimg.testing import require_data
from medimg.zoo import ZOO

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)

PAIR = ("registration_2d_ct_itkelastix", "examples", "data")


def test_shipped_plan_round_trips_unchanged():
    path = ZOO["hippocampus_registration"].path / "plan.json"
    plan = RegisterPlan.load(path)
    assert json.loads(plan.to_json()) == json.loads(path.read_text())
    assert RegisterPlan.from_json(plan.to_json()) == plan
    assert plan.replace(**{"reg_weight": 1.0}).reg_weight == 1.0 and plan.reg_weight == 0.5
    with pytest.raises(InvalidParameterError, match="unknown"):
        RegisterPlan.from_dict({**plan.to_dict(), "no_such_field": 1})


def test_the_register_task_is_registered_and_points_to_medimg_register():
    from medimg.plans.model_folder import read_plan_dict
    from medimg.tasks.registry import get_task, open_model, task_of_plan

    spec = get_task("register")
    assert spec.plan_class() is RegisterPlan and spec.predict is None
    folder = ZOO["hippocampus_registration"].path
    assert task_of_plan(read_plan_dict(folder)) is spec
    plan_without_task = {k: v for k, v in read_plan_dict(folder).items() if k != "task"}
    assert task_of_plan(plan_without_task) is spec  # legacy keys grid + features
    opened, model = open_model("hippocampus_registration")
    assert opened is spec and model.plan == RegisterPlan.load(folder / "plan.json")
    with pytest.raises(InvalidParameterError, match="medimg register FIXED MOVING"):
        spec.predictor()


def test_register_options_refuse_what_cannot_go_together():
    with pytest.raises(InvalidParameterError, match="--model"):
        RegisterOptions(method="learned")
    with pytest.raises(InvalidParameterError, match="--levels"):
        RegisterOptions(method="learned", model="hippocampus_registration", levels="2,1")
    with pytest.raises(InvalidParameterError, match="--prealign"):
        RegisterOptions(method="affine", prealign="center")
    with pytest.raises(InvalidParameterError, match="--sampling"):
        RegisterOptions(sampling=0.0)
    assert RegisterOptions(levels="4,2").levels == (4, 2)


@pytest.mark.realdata
@pytest.mark.parametrize("method, extra", [("rigid", []), ("diffeomorphic-demons", ["--levels", "2,1",
                                                                                     "--iterations", "10"])])
def test_register_images_writes_nothing_and_write_gives_the_command_files(method, extra, tmp_path, monkeypatch,
                                                                         capsys):
    root = require_data(*PAIR)
    files = {k: str(root / f"CT_2D_head_{k}.mha") for k in ("fixed", "moving", "fixed_mask", "moving_mask")}
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    options = RegisterOptions(method=method, levels=tuple(int(v) for v in extra[1].split(",")) if extra else
                              (4, 2, 1), iterations=int(extra[3]) if extra else None)
    from medimg.tasks.register.data import Pair

    pair = Pair(fixed=files["fixed"], moving=files["moving"], moving_labels=files["moving_mask"],
                fixed_labels=files["fixed_mask"])
    result = register_images(read(files["fixed"]), read(files["moving"]), options,
                             labels=read(files["moving_mask"], kind="label"),
                             fixed_labels=read(files["fixed_mask"], kind="label"), pair=pair)
    assert isinstance(result, RegisterResult)
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]
    d = result.to_dict()
    json.dumps(d, allow_nan=False)  # JSON-ready
    assert d["method"] == options.method_name and d["metric_after"] < d["metric_before"]
    assert d["dice"]["mean_after"] > d["dice"]["mean_before"]

    out = tmp_path / "lib"
    paths = result.write(out)
    assert all(p.is_file() for p in paths) and {p.parent for p in paths} <= {out, out / "figures"}
    assert sorted(p.name for p in out.iterdir() if p.name != "figures") == sorted(p.name for p in paths
                                                                                  if p.parent == out)
    written = json.loads((out / "metrics.json").read_text())
    assert written == result.to_dict() and set(written["outputs"]) == {p.name for p in out.iterdir()}

    # the command writes the same files and the same metrics (timings aside)
    cli_out = tmp_path / "cli"
    assert cli_main.main(["register", files["fixed"], files["moving"], "-o", str(cli_out), "--method", method,
                          "--labels", files["moving_mask"], "--fixed-labels", files["fixed_mask"], *extra]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(result.summary_lines()) + 1 and printed[-1].startswith(f"wrote {cli_out}: ")
    assert printed[-1].endswith(", ".join(written["outputs"]))

    def names(folder):
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    assert names(cli_out) == names(out)
    cli_metrics = json.loads((cli_out / "metrics.json").read_text())
    timing = {"seconds", "seconds_postprocess"}
    assert {k: v for k, v in cli_metrics.items() if k not in timing} == \
        {k: v for k, v in written.items() if k not in timing}
    assert np.array_equal(read(cli_out / "warped.nii.gz").array, read(out / "warped.nii.gz").array)
