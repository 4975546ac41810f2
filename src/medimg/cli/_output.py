"""The output option every command accepts: ``-o/--out`` (commands with a positional OUT take either form)."""

from __future__ import annotations

import argparse

__all__ = ["add_output_argument", "resolve_output"]


def add_output_argument(parser: argparse.ArgumentParser, *, help: str) -> None:  # noqa: A002 - argparse's keyword
    """A positional ``OUT`` (optional) and the option ``-o/--out OUT``, both meaning the same output path.

    ``medimg convert IN OUT`` (as documented) and ``medimg convert IN -o OUT`` both work; call
    :func:`resolve_output` first thing in ``run`` to get ``args.output``.
    """
    parser.add_argument("output", nargs="?", metavar="OUT", help=f"{help} (or -o OUT)")
    parser.add_argument("-o", "--out", dest="output_option", metavar="OUT", default=None,
                        help="the output, as the option every command accepts (instead of the positional OUT)")


def resolve_output(args: argparse.Namespace) -> str:
    """``args.output`` from the positional OUT or ``-o/--out``; one of the two, not both (one-line error)."""
    from medimg.core.errors import InvalidParameterError

    positional, option = getattr(args, "output", None), getattr(args, "output_option", None)
    if positional and option and positional != option:
        raise InvalidParameterError("two outputs given", parameter="-o/--out", expected="OUT or -o OUT, not both",
                                    found=f"{positional} and -o {option}", fix="give the output once")
    out = option or positional
    if not out:
        raise InvalidParameterError("no output given", parameter="-o/--out", expected="an output path",
                                    found="none", fix="add -o OUT (or OUT after the input)")
    args.output = out
    return out
