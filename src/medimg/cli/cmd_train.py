"""`medimg train segment DATASET -o MODEL_DIR`: self-configuring segmentation training.

DATASET is an nnU-Net raw folder (dataset.json, imagesTr/CASE_0000.nii.gz, labelsTr/CASE.nii.gz) or a 2D folder
(images/ + masks/ or labels/ of PNG/TIFF/JPEG). The dataset is verified, fingerprinted and planned (the plan is
saved as MODEL_DIR/plan.json and reused by later folds), preprocessed into a disk cache, and one fold is trained
(k-fold split saved in MODEL_DIR/splits.json).
"""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    p = subparsers.add_parser("train", parents=parents, help=help, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["segment"], help="what to train")
    p.add_argument("dataset", help="dataset folder (nnU-Net raw layout or images/ + masks/)")
    p.add_argument("-o", "--out", required=True, help="model folder (created; plan.json, fold_k/)")
    p.add_argument("--fold", default="0", help="fold to train (0..folds-1) or 'all' (every case, no validation)")
    p.add_argument("--folds", type=int, default=5, help="number of cross-validation folds")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock training budget")
    p.add_argument("--iterations", type=int, default=None, help="iteration budget (the first budget hit stops)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a plan field, e.g. --set network.base_channels=24 --set batch_size=4")
    p.add_argument("--cascade", choices=["none", "fcm", "otsu"], default=None,
                   help="feed a classical result of the first channel to the network as extra input channels: "
                   "fcm (3 fuzzy c-means memberships) or otsu (a 0/1 foreground mask); same as --set cascade=...")
    p.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/fold_k/checkpoint.pt")
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
    p.add_argument("--cache", default=None, help="preprocessed cache folder (default $MEDIMG_CACHE or "
                   "~/.cache/medimg/preprocessed)")


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


def run(args: argparse.Namespace) -> int:
    from medimg.tasks.segment.trainer import TrainOptions, train_segmentation

    fold = args.fold if args.fold == "all" else int(args.fold) if args.fold.isdigit() else args.fold
    if not isinstance(fold, int) and fold != "all":
        from medimg.core.errors import InvalidParameterError

        raise InvalidParameterError("bad fold", parameter="--fold", expected="a number or 'all'", found=args.fold)
    overrides = _overrides(args.set)
    if args.cascade is not None:
        overrides += (("cascade", args.cascade),)
    options = TrainOptions(fold=fold, n_folds=args.folds, minutes=args.minutes, iterations=args.iterations,
                           seed=args.seed, overrides=overrides, resume=args.resume,
                           validate_every_minutes=args.validate_every,
                           max_val_cases=args.validate_cases, threads=args.threads, cache_dir=args.cache,
                           foreground_only=args.foreground_only, group_by=args.group_by)
    from medimg.cli.progress import TrainProgress

    fold_label = f"train fold_{fold}" if fold != "all" else "train fold_all"
    metrics = train_segmentation(args.dataset, args.out, options,
                                 callbacks=() if args.quiet else (TrainProgress(label=fold_label),))
    if not args.quiet:
        val = metrics.get("validation")
        print(f"trained {metrics['fold']}: {metrics['iterations']} iterations in {metrics['training_minutes']} min "
              f"({metrics['stop_reason']})")
        if val:
            print("validation Dice per class: " + ", ".join(f"{d:.4f}" for d in val["dice_per_class"]))
        print(f"model folder: {args.out}")
    return 0
