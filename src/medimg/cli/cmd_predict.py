"""`medimg predict MODEL IN OUT`: segment or classify files, folders or DICOM series with a trained model.

MODEL is a model folder (from `medimg train segment` or `medimg train classify`) or a shipped model name (`medimg
models`); what it does follows the model's plan (its task). A registration model registers pairs of images:
`medimg register FIXED MOVING -o OUT --method learned --model NAME`.

Segmentation: IN is an image file, a DICOM series folder, or a folder of case files (nnU-Net naming:
CASE_0000.nii.gz, CASE_0001.nii.gz, ... are the channels of CASE). For a folder, OUT is a folder and gets one
label file per case, named like the case without the channel suffix; --probabilities P and --uncertainty U then
name folders too (P/CASE.nii.gz, U/CASE.nii.gz).

Classification: IN is an image file, a DICOM series folder, a folder of images (class sub-folders or flat), a
folder of DICOM series folders, a CSV (a path column) or a MedMNIST .npz (--split, default test, else val). OUT is
always a new folder: predictions.csv (id, prob_<class> ..., pred, entropy, mutual_information), predictions.json
and explain/<id>.png + explain/<id>.nii.gz (the explanation map; 3D: a montage of the most salient slices).
Every probability is calibrated (each fold's temperature); the uncertainty comes from the fold ensemble, MC dropout
or flip TTA (--uncertainty auto picks the first that the model allows).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    from medimg.cli._args import add_precision_option, add_read_options
    from medimg.cli._classify import EXPLAIN_CHOICES
    from medimg.cli._output import add_output_argument

    p = subparsers.add_parser("predict", parents=parents, help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model folder or shipped model name")
    p.add_argument("input", help="image file, DICOM series folder, folder of cases/images, CSV or MedMNIST .npz")
    add_output_argument(p, help="segmentation: label file (or folder for a folder input); classification: a new "
                        "folder")
    p.add_argument("--tta", action="store_true", help="mirror test-time augmentation (slower, slightly better)")
    p.add_argument("--overlap", type=float, default=0.5, help="sliding-window overlap, 0..0.9")
    p.add_argument("--probabilities", metavar="PATH", help="also write class probabilities (4D NIfTI; for a folder "
                   "input, a folder of CASE.nii.gz)")
    p.add_argument("--uncertainty", metavar="PATH|METHOD",
                   help="segmentation: also write the predictive entropy map to PATH (for a folder input, a folder of "
                   "CASE.nii.gz); classification: auto|ensemble|mc_dropout|tta (default auto: the fold ensemble, "
                   "else MC dropout, else TTA)")
    p.add_argument("--no-postprocess", action="store_true", help="skip largest-component postprocessing")
    p.add_argument("--folds", default=None, help="comma-separated folds to ensemble (default: all trained)")
    c = p.add_argument_group("classification only")
    c.add_argument("--explain", default=None, choices=EXPLAIN_CHOICES,
                   help="explanation map of the predicted class (default gradcam)")
    c.add_argument("--samples", type=int, default=None,
                   help="uncertainty samples per fold (MC dropout: default 20; TTA: default all flips)")
    c.add_argument("--split", default=None, help="split of a MedMNIST .npz, a CSV split column or split folders")
    c.add_argument("--seed", type=int, default=0, help="seed of the MC dropout masks")
    add_precision_option(p)
    add_read_options(p)


def _refuse(args: argparse.Namespace, options: dict[str, object], kind: str) -> None:
    from medimg.core.errors import InvalidParameterError

    for name, default in options.items():
        if getattr(args, name) != default:
            flag = "--" + name.replace("_", "-")
            raise InvalidParameterError(f"option applies to {kind} models only", parameter=flag,
                                        expected=f"no {flag} with this model", found=repr(getattr(args, name)),
                                        fix=f"leave {flag} out")


def _check_extra_outputs(args: argparse.Namespace, batch: bool) -> None:
    """--probabilities / --uncertainty paths: not the input, not the label output, not each other (checked before
    anything is computed, so that a bad path leaves nothing behind)."""
    from medimg.core.errors import ImageWriteError
    from medimg.io.files import same_path

    named = [("OUT", args.output)] + [(f"--{n}", getattr(args, n)) for n in ("probabilities", "uncertainty")
                                       if getattr(args, n)]
    src = Path(args.input)
    for i, (flag, path) in enumerate(named):
        p = Path(path)
        if same_path(p, src) or (src.is_dir() and p.resolve().is_relative_to(src.resolve())):
            raise ImageWriteError("output would overwrite the input", path=p, parameter=flag,
                                  expected="a path outside the input", found=f"the input '{src}'",
                                  fix=f"choose another path for {flag}")
        for other_flag, other in named[:i]:
            if same_path(p, Path(other)):
                raise ImageWriteError("two outputs share one path", path=p, parameter=flag,
                                      expected=f"a path other than {other_flag}'s", found=str(other),
                                      fix=f"give {flag} its own path")
        if batch and p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise ImageWriteError("output folder exists and is not empty", path=p, parameter=flag,
                                  expected="a new or empty folder (a folder input gives one file per case)",
                                  found="existing content", fix="choose a new folder name or empty it first")
        if not batch and p.is_dir():
            raise ImageWriteError("output is an existing folder", path=p, parameter=flag, expected="a file name",
                                  found="a folder", fix="give a file name with an extension, e.g. out.nii.gz")


def run(args: argparse.Namespace) -> int:
    from medimg.cli._output import resolve_output
    from medimg.core.errors import InvalidParameterError
    from medimg.plans.model_folder import read_plan_dict
    from medimg.tasks.registry import task_of_plan
    from medimg.zoo import resolve_model

    resolve_output(args)
    folder = resolve_model(args.model)
    spec = task_of_plan(read_plan_dict(folder), path=folder / "plan.json")  # the plan's task field, never a guess
    if spec.predict is None or spec.name not in _RUNNERS:
        raise InvalidParameterError(
            f"a {spec.name} model is not run by `medimg predict`", parameter="MODEL",
            expected=f"a model of a task `medimg predict` runs ({', '.join(_RUNNERS)})", found=f"a {spec.name} model",
            fix=(spec.pointer or "see `medimg --help`").replace("MODEL", str(args.model)))
    return _RUNNERS[spec.name](args, folder)


def _run_segment(args: argparse.Namespace, model_dir: Path) -> int:
    """Segmentation: parse -> :func:`medimg.tasks.segment.predictor.predict` -> ``result.write`` -> print."""
    import sys

    from medimg.cli._args import read_input
    from medimg.io.cases import case_files
    from medimg.tasks.segment.predictor import check_overlap, load, pixel_size_warning, predict

    _refuse(args, {"explain": None, "samples": None, "split": None, "seed": 0}, "classification")
    check_overlap(args.overlap)
    src = Path(args.input)
    batch = src.is_dir() and bool(case_files(src))
    _check_extra_outputs(args, batch)
    model = load(model_dir, folds=args.folds.split(",") if args.folds else None)
    inputs = src
    if not batch:
        inputs = read_input(args)
        warning = pixel_size_warning(inputs, model, source=args.input)
        if warning and not args.quiet:
            print(f"warning: {warning}", file=sys.stderr)
    result = predict(model, inputs, tta=args.tta, overlap=args.overlap, postprocess=not args.no_postprocess,
                     probabilities=bool(args.probabilities), uncertainty=bool(args.uncertainty),
                     precision=args.precision)
    result.write(args.output, probabilities=args.probabilities, uncertainty=args.uncertainty, inputs=[args.input])
    if args.quiet:
        return 0
    if not batch:
        print(f"wrote {args.output} ({model.name}, folds {', '.join(model.folds)}, {result.precision})")
        return 0
    for line in result.summary_lines():
        print(line)
    extra = "".join(f", {flag} {path}" for flag, path in (("probabilities", args.probabilities),
                                                           ("uncertainty", args.uncertainty)) if path)
    print(f"wrote {args.output} ({len(result.cases)} cases{extra}; {model.name}, folds {', '.join(model.folds)}, "
          f"{result.precision})")
    return 0


def _run_classify(args: argparse.Namespace, model_dir: Path) -> int:
    import sys

    from medimg.cli._args import parse_series
    from medimg.cli._classify import quiet_figure_logs
    from medimg.core.errors import ImageWriteError, InvalidParameterError
    from medimg.tasks.classify.predictor import UNCERTAINTY_METHODS, load, predict

    _refuse(args, {"tta": False, "probabilities": None, "no_postprocess": False, "overlap": 0.5, "spacing": None,
                   "allow_gaps": False}, "segmentation")
    uncertainty = args.uncertainty or "auto"
    if uncertainty not in UNCERTAINTY_METHODS:
        raise InvalidParameterError("unknown uncertainty method for a classification model", parameter="--uncertainty",
                                    expected=" | ".join(UNCERTAINTY_METHODS), found=repr(uncertainty),
                                    fix="e.g. --uncertainty auto (a PATH is for segmentation models)")
    out, src = Path(args.output), Path(args.input)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ImageWriteError("output folder exists and is not empty", path=out, expected="a new or empty folder "
                              "(a classification model writes predictions.csv, predictions.json and explain/)",
                              found="existing content", fix="choose a new folder name or empty it first")
    if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
        raise ImageWriteError("output folder lies inside the input folder", path=out,
                              expected="a folder outside the input", found=f"inside '{src}'",
                              fix="choose an output folder outside the input folder")
    quiet_figure_logs(args.debug)  # one "wrote <temporary path>" line per figure is noise; the summary names OUT
    model = load(model_dir, folds=args.folds.split(",") if args.folds else None)
    split = None if args.split is None else [s.strip() for s in args.split.split(",") if s.strip()]

    def progress(done: int, total: int) -> None:
        if not args.quiet and total > 20:
            print(f"[{done}/{total}] classified", file=sys.stderr, flush=True)

    result = predict(model, args.input, split=split[0] if split and len(split) == 1 else split,
                     series=parse_series(args.series), uncertainty=uncertainty, samples=args.samples,
                     explain=args.explain or "gradcam", seed=args.seed, progress=progress, precision=args.precision)
    result.write(args.output)
    preds, used = result.predictions, result.precision
    if not args.quiet:
        for line in result.summary_lines():
            print(line)
        print(f"wrote {args.output} (predictions.csv, predictions.json"
              f"{', explain/' if preds and preds[0].saliency is not None else ''}; {model.name}, folds "
              f"{', '.join(model.folds)}, {used})")
    return 0


#: task -> how this command runs it (parse its flags, call the task's predictor, write, print)
_RUNNERS = {"segment": _run_segment, "classify": _run_classify}
