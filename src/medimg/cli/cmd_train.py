"""`medimg train segment|classify|register DATASET -o MODEL_DIR`: self-configuring training.

segment: DATASET is an nnU-Net raw folder (dataset.json, imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz) or a 2D
folder (images/ + masks/ or labels/ of PNG/TIFF/JPEG). The dataset is verified, fingerprinted and planned (the plan
is saved as MODEL_DIR/plan.json and reused by later folds), preprocessed into a disk cache, and one fold is trained
(k-fold split saved in MODEL_DIR/splits.json).

classify: DATASET is a folder of class folders (benign/, malignant/, ...; or train/ val/ test/ holding them), a
CSV (path + label, or several 0/1 label columns for multi-label) or a MedMNIST .npz (--split train). The dataset is
verified and planned (MODEL_DIR/plan.json), split into stratified folds (MODEL_DIR/splits.json), preprocessed into
memory, and one fold is trained, then calibrated by temperature scaling on its validation samples (or on --val):
fold_k/ holds model.pt, calibration.json, metrics.json (AUC, accuracy, balanced accuracy, ECE before/after,
confusion matrix), reliability.png and training_curve.png. Example:

  medimg train classify adrenalmnist3d_64_trainval.npz --split train -o runs/adrenal --fold 0 --minutes 15

register: DATASET is an nnU-Net raw folder (labels, when present, add a soft Dice term and give the validation
Dice), images/ + masks/, or a folder of images. The plan (MODEL_DIR/plan.json: grid, spacing, U-Net, losses,
pre-alignment) is self-configured; one fold is trained on random pairs of its training cases and validated on a
fixed list of pairs of its validation cases (fold_k/metrics.json: Dice before/after, folding fraction). Example,
the zoo's hippocampus model, on the segmentation model's split so that its validation cases stay unseen:

  medimg train register ../shared/data/hippocampus -o runs/reg/hippocampus --minutes 40 \
      --splits src/medimg/zoo/hippocampus/splits.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    from medimg.cli._args import add_precision_option

    p = subparsers.add_parser("train", parents=parents, help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=_task_names(), help="what to train")
    p.add_argument("dataset", help="segment: dataset folder (nnU-Net raw layout or images/ + masks/); classify: "
                   "folder of class folders, CSV or MedMNIST .npz; register: nnU-Net raw folder, images/ + masks/ "
                   "or a folder of images")
    p.add_argument("-o", "--out", required=True, help="model folder (created; plan.json, fold_k/)")
    p.add_argument("--fold", default="0", help="fold to train (0..folds-1) or 'all' (every case; no validation, except "
                   "on --val for classify)")
    p.add_argument("--folds", type=int, default=None,
                   help="number of cross-validation folds (segment, register: 5; classify: the plan's choice, 5 or "
                   "fewer)")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock training budget (register: 15 when neither --minutes nor --iterations)")
    p.add_argument("--iterations", type=int, default=None, help="iteration budget (the first budget hit stops)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a plan field, e.g. --set network.base_channels=24 --set batch_size=4")
    p.add_argument("--cascade", choices=["none", "fcm", "otsu"], default=None,
                   help="feed a classical result of the first channel to the network as extra input channels: "
                   "fcm (3 fuzzy c-means memberships) or otsu (a 0/1 foreground mask); same as --set cascade=...")
    p.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/fold_k/checkpoint.pt (without it, "
                   "a fold that already has model.pt is refused rather than overwritten)")
    p.add_argument("--validate-every", type=float, default=None, metavar="MIN",
                   help="validate every MIN minutes of training (Dice-vs-minutes curve in metrics.json)")
    p.add_argument("--validate-cases", type=int, default=None, metavar="N",
                   help="cases used by the periodic validation (the final validation uses every case of the fold)")
    p.add_argument("--foreground-only", action="store_true",
                   help="2D layouts: treat every non-zero label as foreground (instance maps such as nuclei)")
    p.add_argument("--group-by", default=None, metavar="REGEX",
                   help="keep the cases of one patient in one fold: the regex's first group names the patient, "
                   "e.g. '^(\\d+)_' for HC18 (010_HC and 010_2HC are one fetus)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    add_precision_option(p)
    p.add_argument("--cache", default=None, help="preprocessed cache folder (default $MEDIMG_CACHE or "
                   "~/.cache/medimg/preprocessed)")
    c = p.add_argument_group("classify only")
    c.add_argument("--split", default=None, metavar="NAME[,NAME]",
                   help="dataset split(s) to train on, e.g. 'train' for MedMNIST (default: every split but test)")
    c.add_argument("--val", default=None, metavar="DATA2",
                   help="separate validation data for the final metrics and the temperature (instead of the fold's "
                   "validation samples); a MedMNIST .npz gives its val split")
    c.add_argument("--val-split", default=None, metavar="NAME", help="split of --val to use")
    c.add_argument("--deterministic", action="store_true",
                   help="repeatable run: deterministic algorithms, only the iteration budget stops training")
    c.add_argument("--max-data-gb", type=float, default=4.0,
                   help="limit of the preprocessed samples held in memory (default 4)")
    c.add_argument("--init", default=None, metavar="MODEL",
                   help="transfer learning: start from a classification model trained by medimg (folder or shipped "
                   "name, e.g. adrenalmnist3d); its network is reused, the head is new when the classes differ")
    r = p.add_argument_group("segment and register")
    r.add_argument("--splits", default=None, metavar="SPLITS.json",
                   help="reuse the folds of another model of the same dataset (its splits.json), e.g. the "
                   "segmentation model's, so that cases it validates on stay unseen")


def _task_names() -> list[str]:
    """The registered tasks, from the registry's package list (building the parser imports no task)."""
    from medimg.tasks.registry import TASK_PACKAGES

    return [p.rpartition(".")[2] for p in TASK_PACKAGES]


#: command-line flag -> TrainOptions field, where the names differ
_FIELD_OF = {"folds": "n_folds", "set": "overrides", "validate_every": "validate_every_minutes",
             "validate_cases": "max_val_cases", "cache": "cache_dir", "val": "val_data", "init": "init_from"}
#: flags that are not TrainOptions fields
_NOT_OPTIONS = {"task", "dataset", "out", "cascade", "quiet", "debug", "command", "func"}
#: flags owned by some tasks only, with their defaults (a flag given to a task that does not use it is refused)
_TASK_FLAGS = {"cascade": None, "validate_every": None, "validate_cases": None, "foreground_only": False,
               "cache": None, "split": None, "val": None, "val_split": None, "deterministic": False,
               "max_data_gb": 4.0, "init": None, "splits": None, "group_by": None}


def _overrides(items: list[str]) -> tuple[tuple[str, object], ...]:
    from medimg.core.errors import InvalidParameterError

    out = []
    for item in items:
        if "=" not in item:
            raise InvalidParameterError("not FIELD=VALUE", parameter="--set", found=repr(item),
                                        fix="write e.g. --set network.base_channels=24")
        key, text = item.split("=", 1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.append((key.strip(), value))
    return tuple(out)


def _fold(text: str) -> int | str:
    from medimg.core.errors import InvalidParameterError

    if text == "all":
        return "all"
    if text.isdigit():
        return int(text)
    raise InvalidParameterError("bad fold", parameter="--fold", expected="a number or 'all'", found=text,
                                fix="e.g. --fold 0, or --fold all")


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse a flag the task does not use (one line naming the flag as typed), before anything is read."""
    from medimg.core.errors import InvalidParameterError
    from medimg.tasks.registry import get_task

    def users(flag: str) -> list[str]:  # the tasks that take a flag (--cascade is segmentation's --set cascade=...)
        if flag == "cascade":
            return ["segment"]
        field = _FIELD_OF.get(flag, flag)
        return [t for t in _task_names() if field in get_task(t).options]

    for flag, default in _TASK_FLAGS.items():
        if getattr(args, flag) == default or args.task in users(flag):
            continue
        name = "--" + flag.replace("_", "-")
        owners = " | ".join(users(flag))
        raise InvalidParameterError(f"option applies to `medimg train {owners}` only", parameter=name,
                                    expected=f"no {name} for `medimg train {args.task}`",
                                    found=repr(getattr(args, flag)), fix=f"leave {name} out")


def options_from_args(args: argparse.Namespace) -> Any:
    """The one TrainOptions of a run, from the command line's flags."""
    from medimg.train.run import TrainOptions

    _check_flags(args)
    values: dict[str, Any] = {}
    for name, value in vars(args).items():
        field = _FIELD_OF.get(name, name)
        if name in _NOT_OPTIONS or field not in TrainOptions.__dataclass_fields__:
            continue
        values[field] = value
    values["fold"] = _fold(args.fold)
    values["overrides"] = _overrides(args.set) + ((("cascade", args.cascade),) if args.cascade is not None else ())
    if args.split is not None:
        split = tuple(s.strip() for s in args.split.split(",") if s.strip())
        values["split"] = split[0] if len(split) == 1 else split
    return TrainOptions(**values)


def _summary(task: str, metrics: dict[str, Any]) -> list[str]:
    lines = [f"trained {metrics['fold']}: {metrics['iterations']} iterations in {metrics['training_minutes']} min "
             f"({metrics['stop_reason']}; {metrics['precision']})"]
    val = metrics.get("validation")
    if task == "segment" and val:
        lines.append("validation Dice per class: " + ", ".join(f"{d:.4f}" for d in val["dice_per_class"]))
    elif task == "classify":
        if val:
            auc = "n/a" if val["auc_macro"] is None else f"{val['auc_macro']:.4f}"
            lines.append(f"validation ({val['n']} samples): AUC {auc}, accuracy {val['accuracy']:.4f}, balanced "
                         f"accuracy {val['balanced_accuracy']:.4f}, ECE {val['ece_before']:.4f} -> "
                         f"{val['ece_after']:.4f} (temperature {val['temperature']:.3f}; fitted on these samples, "
                         "so optimistic)")
        else:
            lines.append("no validation samples: temperature left at 1 (give --val DATA2 to calibrate)")
    elif task == "register" and val:
        if "mean_dice_after" in val:
            lines.append(f"validation ({val['n_pairs']} pairs of unseen cases): mean label Dice "
                         f"{val['mean_dice_before']:.4f} -> {val['mean_dice_after']:.4f}, folding fraction "
                         f"{val['folding_fraction_mean']:.5f}, {val['seconds_mean']:.3f} s per pair")
        else:
            lines.append(f"validation ({val['n_pairs']} pairs): folding fraction {val['folding_fraction_mean']:.5f}")
    return lines


def run(args: argparse.Namespace) -> int:
    from medimg.api import train
    from medimg.cli.progress import TrainProgress
    from medimg.tasks.registry import get_task

    spec = get_task(args.task)
    options = options_from_args(args)
    label = f"train {'fold_all' if options.fold == 'all' else f'fold_{options.fold}'}"
    metrics = train(spec.name, args.dataset, args.out, options,
                    callbacks=() if args.quiet else (TrainProgress(label=label),))
    if not args.quiet:
        for line in _summary(spec.name, metrics):
            print(line)
        print(f"model folder: {args.out}")
    return 0
