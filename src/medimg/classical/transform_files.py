"""ITK transform files: :func:`save_transform` (atomic; .tfm/.txt text or .h5 HDF5) and :func:`load_transform`, which
checks a text file's parameters against its declared transform before ITK parses it, and reads other files in a
child process, so that a damaged or hostile file is one error instead of a crash."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from medimg.core.errors import ImageReadError, ImageWriteError

__all__ = ["TRANSFORM_EXTENSIONS", "save_transform", "load_transform"]

TRANSFORM_EXTENSIONS = (".tfm", ".txt", ".h5", ".hdf5")


def _has_displacement_field(transform: sitk.Transform) -> bool:
    if transform.GetName() == "DisplacementFieldTransform":
        return True
    if transform.GetName() == "CompositeTransform":
        comp = sitk.CompositeTransform(transform)
        return any(_has_displacement_field(comp.GetNthTransform(i)) for i in range(comp.GetNumberOfTransforms()))
    return False


def save_transform(transform: sitk.Transform, path: str | os.PathLike[str], *,
                   inputs: Sequence[str | os.PathLike[str]] = ()) -> Path:
    """Write a transform as an ITK transform file (.tfm/.txt text, or .h5 HDF5), atomically.

    A transform that holds a displacement field (demons) must go to .h5.

    Raises:
        ImageWriteError: unknown extension, a displacement field to a text file, ``path`` is one of ``inputs``.
    """
    from medimg.io.files import atomic_output, compound_suffix

    out = Path(path)
    ext = compound_suffix(out)
    if ext not in TRANSFORM_EXTENSIONS:
        raise ImageWriteError("unknown transform file extension", path=out,
                              expected=f"one of {', '.join(TRANSFORM_EXTENSIONS)}", found=f"'{ext or 'none'}'",
                              fix="name it transform.tfm (rigid/affine) or transform.h5 (any transform)")
    if ext in (".tfm", ".txt") and _has_displacement_field(transform):
        raise ImageWriteError("a displacement-field transform cannot be written as text", path=out,
                              expected=".h5", found=ext, fix="save it as transform.h5")
    with atomic_output(out, inputs=inputs) as tmp:
        try:
            sitk.WriteTransform(transform, str(tmp))
        except RuntimeError as exc:
            raise ImageWriteError("cannot write the transform", path=out, found=str(exc).splitlines()[-1][:200],
                                  fix="check the folder is writable and the extension is .tfm or .h5") from exc
    return out


def load_transform(path: str | os.PathLike[str]) -> sitk.Transform:
    """Read an ITK transform file (.tfm/.txt "#Insight Transform File", .h5 HDF5, as written by medimg, ITK,
    ANTs (.h5) or 3D Slicer).

    Raises:
        ImageReadError: the file is missing or is not an ITK transform (an FSL .mat matrix, an elastix
            parameter file, a truncated .h5, ...), with the file named.
    """
    from medimg.io.files import check_input

    p = check_input(path, allow_dir=False)
    fix = ("give an ITK transform file (.tfm or .h5, e.g. OUT/transform.* from medimg register); convert an FSL "
           ".mat with c3d_affine_tool -fsl2ras -oitk, or elastix parameters with transformix/itk-elastix")
    head = p.read_bytes()[:512]
    is_hdf5 = head.startswith(b"\x89HDF")
    is_text = head.lstrip().startswith(b"#Insight Transform File")
    is_itk_mat = p.suffix.lower() == ".mat" and head[:8] != b"" and not _looks_like_text(head)
    if not (is_hdf5 or is_text or is_itk_mat):
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:60] if head.strip() else "an empty file"
        raise ImageReadError("not an ITK transform file", path=p,
                             expected="'#Insight Transform File' text or ITK HDF5", found=repr(first), fix=fix)
    # ITK's readers trust the declared sizes: a 170-byte B-spline file declaring a 100000^3 grid aborts the
    # process ("double free or corruption"). Text files are checked here; binary ones are read once in a child
    # process first, so that a crash there is an error here.
    if is_text:
        _check_text_transform(p, fix)
    else:
        _probe_transform_in_child(p, fix)
    try:
        tx = sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        raise ImageReadError("cannot read the transform (damaged or not an ITK transform)", path=p,
                             expected="a complete ITK transform file", found=str(exc).strip().splitlines()[-1][:160],
                             fix=fix) from exc
    return tx.Downcast() if hasattr(tx, "Downcast") else tx


#: transform types whose fixed parameters declare a grid: size (D), origin (D), spacing (D), direction (D x D),
#: with D values per grid point in Parameters
_GRID_TRANSFORMS = ("BSplineTransform", "BSplineDeformableTransform", "DisplacementFieldTransform",
                    "GaussianSmoothingOnUpdateDisplacementFieldTransform",
                    "BSplineSmoothingOnUpdateDisplacementFieldTransform", "ConstantVelocityFieldTransform",
                    "GaussianExponentialDiffeomorphicTransform", "BSplineExponentialDiffeomorphicTransform")
_MAX_TRANSFORM_FILE = 2 * 1024**3
_TRANSFORM_NAME = re.compile(r"^([A-Za-z0-9]+)_(double|float)_(\d+)_(\d+)$")


def _check_text_transform(p: Path, fix: str) -> None:
    """Check an ITK text transform file before ITK reads it: known layout, finite numbers, and for grid
    transforms (B-spline, displacement field) a grid size that matches the number of parameters given.

    Raises:
        ImageReadError: naming the file, the transform and what does not add up.
    """
    size = p.stat().st_size
    if size > _MAX_TRANSFORM_FILE:
        raise ImageReadError("transform file too large", path=p, expected=f"at most {_MAX_TRANSFORM_FILE} bytes",
                             found=f"{size} bytes", fix=fix)
    try:
        text = p.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise ImageReadError("not an ITK text transform file", path=p, expected="ASCII text",
                             found="non-ASCII bytes", fix=fix) from exc

    def bad(what: str, found: Any, expected: str) -> ImageReadError:
        return ImageReadError(f"invalid transform file: {what}", path=p, expected=expected, found=found, fix=fix)

    blocks: list[dict[str, Any]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or key not in ("Transform", "Parameters", "FixedParameters"):
            raise bad(f"line {n} is not 'Transform:', 'Parameters:' or 'FixedParameters:'", repr(line[:60]),
                      "the ITK text transform layout")
        if key == "Transform":
            blocks.append({"name": value.strip(), "line": n})
            continue
        if not blocks:
            raise bad(f"line {n}: {key} before any 'Transform:' line", repr(line[:60]), "a 'Transform:' line first")
        if key in blocks[-1]:
            raise bad(f"line {n}: a second {key} line for one transform", repr(line[:60]), "one line of each")
        try:
            values = np.array(value.split(), dtype=float)
        except ValueError:
            raise bad(f"line {n}: {key} holds something other than numbers", repr(value.strip()[:60]),
                      "numbers separated by spaces") from None
        if not np.all(np.isfinite(values)):
            raise bad(f"line {n}: {key} holds NaN or infinite values", f"{int((~np.isfinite(values)).sum())} "
                      "non-finite values", "finite numbers")
        blocks[-1][key] = values
    if not blocks:
        raise bad("no 'Transform:' line", "none", "at least one transform")
    for b in blocks:
        m = _TRANSFORM_NAME.match(b["name"])
        if not m:
            raise bad(f"line {b['line']}: unknown transform name", repr(b["name"][:60]),
                      "a name like AffineTransform_double_3_3")
        kind, d_in, d_out = m.group(1), int(m.group(3)), int(m.group(4))
        if d_in not in (2, 3) or d_out not in (2, 3):
            raise bad(f"line {b['line']}: {d_in}D -> {d_out}D transform", b["name"], "a 2D or 3D transform")
        if kind == "CompositeTransform":
            continue
        if "Parameters" not in b or "FixedParameters" not in b:
            raise bad(f"line {b['line']}: {kind} without Parameters and FixedParameters lines", "a missing line",
                      "both lines after each 'Transform:' line")
        if kind in _GRID_TRANSFORMS:
            _check_grid(b, kind, d_in, bad)


def _check_grid(block: dict[str, Any], kind: str, dim: int, bad: Any) -> None:
    fixed, params = block["FixedParameters"], block["Parameters"]
    n_fixed = dim * (dim + 3)
    if fixed.size != n_fixed:
        raise bad(f"{kind} has {fixed.size} fixed parameters", f"{fixed.size} values",
                  f"{n_fixed} (grid size, origin, spacing, direction)")
    grid, spacing, direction = fixed[:dim], fixed[2 * dim:3 * dim], fixed[3 * dim:].reshape(dim, dim)
    if np.any(grid < 1) or np.any(grid != np.round(grid)):
        raise bad(f"{kind} grid size {grid.tolist()}", grid.tolist(), "whole numbers >= 1")
    if np.any(spacing <= 0) or abs(float(np.linalg.det(direction))) < 1e-6:
        raise bad(f"{kind} grid spacing/direction", f"spacing {spacing.tolist()}",
                  "spacing > 0 and an invertible direction")
    points = math.prod(int(v) for v in grid)
    if points * dim != params.size:
        raise bad(f"{kind} declares a grid of {' x '.join(str(int(v)) for v in grid)} points",
                  f"{params.size} parameters", f"{dim} per grid point = {points * dim} parameters")


def _probe_transform_in_child(p: Path, fix: str) -> None:
    """Read a binary transform file (HDF5, .mat) once in a child process with a memory limit: ITK aborts the
    whole process on some damaged files, and a crash in the child becomes a one-line error here."""
    import subprocess
    import sys

    code = ("import resource, sys\n"
            "limit = 8 * 1024 ** 3\n"
            "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
            "import SimpleITK as sitk\n"
            "sitk.ReadTransform(sys.argv[1])\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        raise ImageReadError("reading the transform did not finish in 300 s", path=p,
                             expected="a complete ITK transform file", found="a reader that hangs", fix=fix) from exc
    if proc.returncode == 0:
        return
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    if proc.returncode < 0:
        found = f"ITK's reader crashed (signal {-proc.returncode})"
    elif any("MemoryError" in ln or "bad_alloc" in ln for ln in lines):
        found = "ITK's reader ran out of memory (the file declares a huge transform)"
    else:
        found = lines[-1][:160] if lines else f"exit code {proc.returncode}"
    raise ImageReadError("cannot read the transform (damaged or not an ITK transform)", path=p,
                         expected="a complete ITK transform file", found=found, fix=fix)


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("ascii")
    except UnicodeDecodeError:
        return False
    return True

