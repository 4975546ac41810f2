"""Entry point of the ``medimg`` command.

Each subcommand lives in ``medimg.cli.cmd_<name>`` and exposes ``add_parser(subparsers, parents)`` and
``run(args) -> int``. Modules are imported only for the command that runs, so ``medimg --help`` stays instant.
Errors the library raises on purpose (:class:`medimg.core.errors.MedimgError`) become one line on stderr and
exit code 2; ``--debug`` shows the traceback instead.

Exit codes: 0 success; 1 internal error (a bug); 2 bad input or parameters (one line on stderr, nothing
written); 3 ``register --pairs``: the batch finished but some pairs failed (see OUT/summary.csv); 130
interrupted; 141 stdout was closed early (``medimg info ... | head``): the rest of the output is dropped quietly,
as a process killed by SIGPIPE (128 + 13) would report, with no message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("medimg.cli.cmd_info", "describe an image, DICOM series or folder (no identifying values)"),
    "convert": ("medimg.cli.cmd_convert", "convert between DICOM, NIfTI, NRRD, MHA, PNG/JPEG/TIFF and NPZ"),
    "preprocess": ("medimg.cli.cmd_preprocess", "window, normalise, resample, reorient, crop, filter, N4"),
    "deid": ("medimg.cli.cmd_deid", "de-identify DICOM files (PS3.15 Annex E basic profile)"),
    "segment": ("medimg.cli.cmd_segment", "classical segmentation: thresholds, region growing, FCM, graph cut, "
                "watershed, level sets, SLIC, (multi-)atlas"),
    "measure": ("medimg.cli.cmd_measure", "volumes, areas, diameters and intensity statistics per label in "
                "mm/mL/HU"),
    "evaluate": ("medimg.cli.cmd_evaluate", "compare predicted and reference masks: Dice, HD95, ASSD, NSD, ... "
                 "per case and class"),
    "verify": ("medimg.cli.cmd_verify", "check a segmentation or classification training dataset and list every "
               "problem"),
    "train": ("medimg.cli.cmd_train", "train a self-configuring model: segment (nnU-Net or 2D layout), classify, "
              "or register (learned deformable registration)"),
    "predict": ("medimg.cli.cmd_predict", "segment or classify files, folders or DICOM series with a model"),
    "models": ("medimg.cli.cmd_models", "list the models that ship with medimg"),
    "analyze": ("medimg.cli.cmd_analyze", "the main job: pick a pipeline, segment, measure, write an HTML report"),
    "demo": ("medimg.cli.cmd_demo", "run the main job on the CT sample shipped with medimg"),
    "register": ("medimg.cli.cmd_register", "register images: classical rigid, affine, B-spline or demons, or a "
                 "learned model (--method learned); warped image/labels, transform, displacement field, metrics"),
    "warp": ("medimg.cli.cmd_warp", "apply a saved ITK transform (.tfm/.h5) to an image or label map"),
}

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def _stdout_closed() -> int:
    """stdout's reader went away (``medimg info X | head``): drop the rest of the output quietly.

    Python's documented recipe: point stdout at /dev/null so that the interpreter's final flush does not raise
    a second BrokenPipeError, and exit with 141 (128 + SIGPIPE) as a SIGPIPE-killed process would.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (e.g. captured in tests)
        pass
    return EXIT_BROKEN_PIPE


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """--quiet/--debug, accepted before and after the subcommand.

    The subcommand copies use SUPPRESS as default so that they do not reset a flag given before the
    subcommand (``medimg --quiet deid ...``).
    """
    default = False if top else argparse.SUPPRESS
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", default=default,
                        help="print only warnings and errors (no progress or results)")
    common.add_argument("--debug", action="store_true", default=default, help="show tracebacks and debug logs")
    return common


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    from medimg import __version__

    common = _common_options(top=False)
    parser = argparse.ArgumentParser(
        prog="medimg",
        description="Medical image processing: DICOM/NIfTI I/O, preprocessing, classical and deep-learning "
        "analysis on an ordinary CPU.",
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"medimg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Import only the module of the command being run (or all of them for --help listings).
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if wanted in COMMANDS and name != wanted:
            sub.add_parser(name, help=help_text, parents=[common])
            continue
        mod = importlib.import_module(module)
        mod.add_parser(sub, parents=[common], help=help_text)
    return parser


def _configure_logging(quiet: bool, debug: bool) -> None:
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s" if not debug else "%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if not debug:
        for noisy in ("pydicom", "PIL", "matplotlib"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # also from argparse's --help output
        return _stdout_closed()


#: the positional inputs of the commands (and register's --pairs), in the order an error names them
_INPUT_ARGS = ("input", "image", "labels", "pred", "gt", "fixed", "moving", "transform", "dataset", "pairs")


def _input_paths(args: argparse.Namespace) -> str:
    """The command's input path(s), quoted, for an error line that has no file of its own (out of memory)."""
    names = [getattr(args, a) for a in _INPUT_ARGS if isinstance(getattr(args, a, None), (str, os.PathLike))]
    return ", ".join(f"'{os.fspath(n)}'" for n in names)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_BAD_INPUT
    _configure_logging(args.quiet, args.debug)
    module = importlib.import_module(COMMANDS[args.command][0])
    from medimg.core.errors import MedimgError

    try:
        code = int(module.run(args) or EXIT_OK)
        sys.stdout.flush()  # a closed pipe shows up here at the latest, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except MedimgError as exc:
        if args.debug:
            raise
        print(f"medimg {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"medimg {args.command}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        inputs = _input_paths(args)
        what = f"{inputs} is too large" if inputs else "the input is too large"
        print(f"medimg {args.command}: error: out of memory; {what} for this machine. "
              "Fix: crop or downsample the input first", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - last-resort guard: one line instead of a traceback
        if args.debug:
            raise
        print(f"medimg {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(this is a bug; run again with --debug and report the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
