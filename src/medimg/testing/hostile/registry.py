"""The registry of hostile cases: :class:`Case` (id, area, expected outcome, builder), :class:`Built` (what a case
wrote: command lines, names the error may give, markers, checks), :data:`CASES` filled by the :func:`case`
decorator in the ``cases_*`` modules, :data:`AREAS` and :data:`FUZZ_SUFFIXES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Case", "Built", "CASES", "AREAS", "FUZZ_SUFFIXES", "case", "read_runs"]


AREAS = ("dicom", "readers", "predict", "register")
#: the reader fuzz targets and the file suffix each writes its bytes to
FUZZ_SUFFIXES = {"dicom": (".dcm",), "nii": (".nii",), "nii_gz": (".nii.gz",), "npz": (".npz",),
                 "itk": (".mha", ".nrrd"), "raster": (".png", ".tif")}


@dataclass
class Built:
    """What a case wrote: the command lines (argv for ``medimg``), the words the error may name, and checks."""

    runs: list[list[str]]
    names: tuple[str, ...]
    markers: list[Path] = field(default_factory=list)
    check: Callable[[], None] | None = None
    one_line: bool = True  # False: a command that reports a list of problems (verify) may print several lines


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    summary: str
    expect: str
    make: Callable[[Path], Built]
    isolate: bool = False
    fuzz: str | None = None  # the fuzz target whose seed corpus gets this case's input (tiny files only)




CASES: dict[str, Case] = {}


def case(id: str, area: str, expect: str, summary: str, *, isolate: bool = False,  # noqa: A002
         fuzz: str | None = None):
    assert area in AREAS and expect in ("refuse", "ok", "ok_or_refuse", "warn_or_refuse")

    def deco(fn: Callable[[Path], Built]) -> Callable[[Path], Built]:
        assert id not in CASES, id
        CASES[id] = Case(id, area, summary, expect, fn, isolate, fuzz)
        return fn

    return deco


def read_runs(f: Path, root: Path, *commands: str) -> list[list[str]]:
    runs = []
    for c in commands:
        if c == "info":
            runs.append(["info", str(f)])
        else:
            runs.append(["convert", str(f), str(root / "converted.nii.gz")])
    return runs
