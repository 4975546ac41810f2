"""`medimg models`: the models that ship with medimg."""

from __future__ import annotations

import argparse


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    subparsers.add_parser("models", parents=parents, help=help, description=__doc__)


def run(args: argparse.Namespace) -> int:
    from medimg.zoo import list_zoo

    for entry in list_zoo():
        if entry.available:
            state = "ready" if entry.shipped else "ready (trained locally)"
        else:
            state = ("no weights (retrain with the command below)" if entry.shipped else
                     "not shipped: " + entry.note)
        print(f"{entry.name:<26} {entry.task:<8} {state}")
        print(f"  {entry.description}")
        print(f"  folder:  {entry.path}")
        print(f"  retrain: {entry.retrain}")
    return 0
