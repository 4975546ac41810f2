"""One flag vocabulary over every subcommand (issue 12, item 10): built from the real parser of cli/main.py."""

import argparse

import pytest

from medimg.cli.main import COMMANDS, build_parser
from medimg.io import read
from medimg.testing import require_data

#: commands with an output that still take it only positionally (none left)
POSITIONAL_ONLY: set[str] = set()
#: commands that write nothing, or write only through named-format options (measure --json/--csv)
NO_OUTPUT = {"info", "models", "verify", "measure"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_writing_output_accepts_o_and_out():
    subs = _subparsers()
    assert set(subs) == set(COMMANDS)
    for name, sub in subs.items():
        if name in NO_OUTPUT | POSITIONAL_ONLY:
            continue
        options = sub._option_string_actions
        assert "-o" in options and "--out" in options, name
        assert options["-o"] is options["--out"], name


def test_old_output_spellings_still_parse():
    subs = _subparsers()
    assert subs["evaluate"].parse_args(["a", "b", "--output", "x"]).output == "x"
    assert subs["evaluate"].parse_args(["a", "b", "--out", "x"]).output == "x"
    assert subs["demo"].parse_args(["-o", "x"]).out == "x"
    for name in ("convert", "preprocess", "deid"):
        assert subs[name].parse_args(["in", "x"]).output == "x"
        assert subs[name].parse_args(["in", "-o", "x"]).output_option == "x"


def test_no_rendered_help_shows_a_doubled_percent_sign():
    parser = build_parser()
    texts = {"medimg": parser.format_help()}
    texts.update({name: sub.format_help() for name, sub in _subparsers().items()})
    for name, text in texts.items():
        assert "%%" not in text, name
    assert "95% bootstrap" in texts["evaluate"]


def test_register_and_train_summaries_mention_learned_registration():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in action._choices_actions}
    for name in ("register", "train"):
        assert "learned" in summaries[name] and "regist" in summaries[name], summaries[name]
    assert "learned" in parser.format_help()


def test_convert_takes_o_instead_of_the_positional_output(tmp_path, capsys):
    from medimg.cli.main import main

    src = require_data("hippocampus", "imagesTr", "hippocampus_001_0000.nii.gz")
    assert main(["convert", str(src), "-o", str(tmp_path / "a.mha")]) == 0, capsys.readouterr().err
    assert read(tmp_path / "a.mha").spatial_shape == read(src).spatial_shape
    assert main(["convert", str(src), str(tmp_path / "b.mha"), "--out", str(tmp_path / "c.mha")]) == 2
    err = capsys.readouterr().err
    assert "two outputs" in err and len(err.strip().splitlines()) == 1
    assert main(["convert", str(src)]) == 2
    assert "no output" in capsys.readouterr().err
    assert not (tmp_path / "b.mha").exists() and not (tmp_path / "c.mha").exists()


@pytest.mark.parametrize("spelling", ["-o", "--out", "--output"])
def test_evaluate_writes_with_every_output_spelling(tmp_path, capsys, spelling):
    from medimg.cli.main import main

    lab = require_data("hippocampus", "labelsTr", "hippocampus_001.nii.gz")
    assert main(["evaluate", str(lab), str(lab), spelling, str(tmp_path / "ev"), "--bootstrap", "10", "-q"]) == 0
    assert (tmp_path / "ev" / "per_case.csv").is_file()


def test_one_visible_spacing_name_where_pixel_spacing_exists():
    subs = _subparsers()
    for name in ("analyze", "segment"):
        text = subs[name].format_help()
        assert "--pixel-spacing" in text and "--spacing" not in text.replace("--pixel-spacing", ""), name
        # the old spelling still parses (hidden, deprecated)
        assert "--spacing" in subs[name]._option_string_actions
    # demo's --spacing is the resampling target, not the input's pixel size: kept and described as such
    assert "resampling target" in subs["demo"].format_help()


def test_predict_takes_out_positionally_or_as_option():
    subs = _subparsers()
    assert subs["predict"].parse_args(["m", "in", "x"]).output == "x"
    args = subs["predict"].parse_args(["m", "in", "-o", "x"])
    from medimg.cli._output import resolve_output

    assert resolve_output(args) == "x"
