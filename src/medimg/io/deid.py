"""De-identification of DICOM files: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

This module owns :func:`deidentify` (a file or a folder in, a new file or folder out: reading, walking, writing
and the re-identification mapping), the :class:`DeidReport` it returns and :func:`mask`, the one way to mention an
identifying value in a log. The profile's actions applied to one data set, and :func:`deidentify_image` (with
:func:`deidentify_metadata` and :func:`deidentify_template`), which the .npz and DICOM writers and ``medimg convert``
use so that outputs keep no identifying values unless asked to, live in :mod:`medimg.io.deid_actions` and are
re-exported here. The action table itself lives in :mod:`medimg.io.deid_profile`.

What is done to every data set (nested sequence items included):

* each attribute of Table E.1-1 gets its basic-profile action. Where the table offers a choice, the first
  (most removing) action is taken: ``X/Z``, ``X/D``, ``X/Z/D`` remove; ``Z/D`` empties; ``X/Z/U*`` keeps the
  sequence and replaces the UIDs inside it. ``D`` writes a dummy value of the element's VR; a ``D`` sequence
  (e.g. Graphic Annotation Sequence) is removed, since no meaningful dummy sequence exists.
* Patient's Name and Patient ID are replaced by one pseudonym (``patient_id`` or one derived from the original
  ID with the run's secret), never kept.
* UIDs (``U``) are replaced by ``2.25.<128-bit HMAC-SHA256(secret, uid)>``: the same original UID gives the same
  new UID in every file of the run, and the original cannot be recovered without the secret. Instance UIDs the
  table does not list (any UI value outside the DICOM root ``1.2.840.10008``, except class/scheme UIDs) are
  replaced the same way, so that no original instance UID survives anywhere. The file meta information is
  rebuilt: Media Storage SOP Instance UID follows the new SOP Instance UID; source/sending AE titles are dropped.
* private attributes, curve groups (50xx) and overlay groups (60xx, whose data and comments the profile removes)
  are removed; so are group-length elements, which would be stale.
* with ``date_shift_days`` (Retain Longitudinal Temporal Information with Modified Dates Option), every DA value
  and the date part of every DT value is shifted by the same number of days instead of being removed or emptied,
  and times of day are kept (a shift by whole days leaves them unchanged). Patient's Birth Date and Birth Time
  are not part of that option and stay emptied/removed. Without the option, dates follow the table.
* Patient Identity Removed = YES, De-identification Method, De-identification Method Code Sequence (113100, plus
  113107 when dates were shifted) and Longitudinal Temporal Information Modified are written.
* pixel data is left byte-for-byte as it was: burned-in text is *not* removed (no Clean Pixel Data Option).

Folder input: every file below it is examined; files that are not DICOM, or that pydicom cannot read, or image
files cut before their pixel data, or whose sequences nest deeper than 64 levels, are skipped, counted in
``n_skipped`` and never copied (one summary warning). Symbolic links that resolve outside the input folder are
never followed (they are skipped and counted), and linked folders are not entered. The output folder
has the same tree shape with anonymised names (``dir001/IM00001.dcm``), because original names often carry UIDs,
dates or names. The whole output is written to a temporary folder and renamed into place only when every file
succeeded, so a failure leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import secrets
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.core.errors import ImageReadError, ImageWriteError, InvalidParameterError
from medimg.io.csv_safe import safe_writer
from medimg.io.deid_actions import (
    KEEP_IDENTIFIERS,
    MAX_SEQUENCE_DEPTH,
    METHOD_CODES,
    Deidentifier,
    Unreadable,
    deidentify_dataset,
    deidentify_image,
    deidentify_metadata,
    deidentify_template,
    keeps_identifiers,
)
from medimg.io.files import atomic_output, atomic_output_dir, check_input, is_inside, same_path

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset


__all__ = ["KEEP_IDENTIFIERS", "METHOD_CODES", "DeidReport", "deidentify", "deidentify_image", "deidentify_metadata",
           "deidentify_template", "keeps_identifiers", "mask"]

logger = logging.getLogger(__name__)


_MAX_DATE_SHIFT_DAYS = 100 * 366
#: what pydicom raises on a file it cannot parse (it has no single base class for these)
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, KeyError, TypeError,
                                                 struct.error, NotImplementedError, IndexError)


def mask(value: object) -> str:
    """A form of ``value`` that is safe to log: its first two characters, then ``***``.

    Values of at most three characters are masked entirely.

    >>> mask("Pat^Smith"), mask("AB"), mask(None), mask("")
    ('Pa***', '***', '***', '***')
    """
    text = "" if value is None else str(value)
    if len(text) <= 3:
        return "***"
    return text[:2] + "***"


@dataclass(frozen=True)
class DeidReport:
    """What :func:`deidentify` did.

    Attributes:
        output: the output file or folder.
        n_files: DICOM files de-identified and written.
        n_skipped: files skipped (not DICOM, unreadable, or image files cut before their pixel data).
        n_elements_removed: data elements removed (private ones included), summed over all files.
        n_elements_replaced: data elements whose value was emptied, replaced, remapped or shifted.
        n_uids_remapped: distinct original UIDs given a new value.
        date_shift_days: the shift applied to dates, or None when dates were removed/emptied.
        mapping_file: where the re-identification mapping was written, or None.
    """

    output: Path
    n_files: int
    n_skipped: int
    n_elements_removed: int
    n_elements_replaced: int
    n_uids_remapped: int = 0
    date_shift_days: int | None = None
    mapping_file: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (paths as strings). Holds no identifying value and no secret."""
        out = dataclasses.asdict(self)
        out["output"] = os.fspath(self.output)
        out["mapping_file"] = None if self.mapping_file is None else os.fspath(self.mapping_file)
        return out


def _write_dataset(ds: Dataset, path: Path) -> None:
    """Write one de-identified data set as a DICOM file (Part 10 format, same transfer syntax)."""
    ds.save_as(path, enforce_file_format=True)


def _deidentify_to(ds: Dataset, state: Deidentifier, dest: Path) -> None:
    """De-identify ``ds`` and write it to ``dest``; a damaged value that pydicom cannot convert or write back
    (hostile files: wrong VRs, command-set elements, values of the wrong type) raises Unreadable and leaves no
    file at ``dest``; a failing disk raises ImageWriteError."""
    try:
        _write_dataset(deidentify_dataset(ds, state), dest)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise ImageWriteError("cannot write the de-identified file", path=dest, found=f"{type(exc).__name__}: {exc}",
                              fix="check free disk space and permissions") from exc
    except (Unreadable, MemoryError):
        dest.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged values
        dest.unlink(missing_ok=True)
        logger.debug("cannot de-identify/write a data set (%s)", type(exc).__name__)
        raise Unreadable(f"a value that cannot be de-identified or written back ({type(exc).__name__})") from exc


def _ends_early(ds: Dataset, path: Path) -> bool:
    """True when the last top-level element of defined length does not end exactly at the end of the file."""
    keys = list(ds.keys())
    if not keys:
        return True
    raw = ds.get_item(max(keys))
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if tell is None or length is None or length == 0xFFFFFFFF:
        return False
    return int(tell) + int(length) != path.stat().st_size



def _check_depth(ds: Dataset) -> None:
    """Decode every value now, so a corrupt value fails here and not mid-write, without recursion: sequences
    nested deeper than MAX_SEQUENCE_DEPTH are refused."""
    stack = [(ds, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_SEQUENCE_DEPTH:
            raise Unreadable(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        for tag in list(item.keys()):
            elem = item[tag]
            if elem.VR == "SQ":
                stack.extend((sub, depth + 1) for sub in (elem.value or ()))


def _read_dicom(path: Path) -> Dataset:
    """The data set in ``path``, fully decoded; raises Unreadable when it is not a readable DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        has_magic = len(head) == 132 and head[128:132] == b"DICM"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=not has_magic)
            truncated = any("end of file" in str(w.message).lower() for w in caught) or _ends_early(ds, path)
            if not truncated:
                _check_depth(ds)
                if getattr(ds, "file_meta", None) is not None:
                    _check_depth(ds.file_meta)
    except RecursionError as exc:
        raise Unreadable(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels") from exc
    except Unreadable:
        raise
    except MemoryError:
        raise
    except (InvalidDicomError, Exception) as exc:  # noqa: BLE001 - pydicom has no single base class
        logger.debug("not readable as DICOM (%s)", type(exc).__name__)
        raise Unreadable(f"something pydicom cannot read as DICOM ({type(exc).__name__})") from exc
    if truncated:
        logger.debug("truncated DICOM file skipped")
        raise Unreadable("a DICOM file cut short")
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise Unreadable("a file without SOP Class and Instance UIDs")
    if "Rows" in ds and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise Unreadable("an image cut before its pixel data")
    return ds


def _check_options(date_shift_days: Any, uid_secret: Any, patient_id: Any) -> None:
    if date_shift_days is not None:
        if isinstance(date_shift_days, bool) or not isinstance(date_shift_days, int):
            raise InvalidParameterError("must be a whole number of days", parameter="date_shift_days",
                                        expected="an int or None", found=type(date_shift_days).__name__,
                                        fix="pass e.g. date_shift_days=-365")
        if date_shift_days == 0 or abs(date_shift_days) > _MAX_DATE_SHIFT_DAYS:
            raise InvalidParameterError(
                "a shift of 0 days keeps the real dates; a huge one makes invalid dates",
                parameter="date_shift_days", expected=f"a non-zero int within +/-{_MAX_DATE_SHIFT_DAYS}",
                found=date_shift_days, fix="choose a non-zero shift, or leave it out to remove dates")
    if uid_secret is not None and (not isinstance(uid_secret, str) or not uid_secret):
        raise InvalidParameterError("must be a non-empty string", parameter="uid_secret",
                                    expected="a secret string or None", found="an empty or non-string value",
                                    fix="pass a long random string kept apart from the data, or None")
    if patient_id is not None and (
        not isinstance(patient_id, str) or not patient_id.strip() or len(patient_id) > 64
        or "\\" in patient_id or not patient_id.isprintable()
    ):
        raise InvalidParameterError(
            "not a valid Patient ID", parameter="patient_id",
            expected="1 to 64 printable characters without a backslash",
            found=f"{len(patient_id) if isinstance(patient_id, str) else type(patient_id).__name__} chars",
            fix="choose a short pseudonym such as 'SUBJ-001'")


def _check_mapping(mapping_file: Any, inp: Path, out: Path) -> Path | None:
    if mapping_file is None:
        return None
    mp = Path(mapping_file)
    if mp.suffix.lower() not in (".json", ".csv"):
        raise InvalidParameterError("unknown mapping file format", parameter="mapping_file",
                                    expected="a name ending in .json or .csv", found=mp.suffix or "no extension",
                                    fix="name it e.g. mapping.json")
    if same_path(mp, out) or is_inside(mp, out) or same_path(mp, inp) or (inp.is_dir() and is_inside(mp, inp)):
        raise ImageWriteError(
            "the mapping file must be kept apart from the output and the input", path=mp,
            expected="a path outside the output (and input) folder", found="a path inside or equal to it",
            fix="write the mapping to a separate, access-controlled folder")
    if mp.exists():
        raise ImageWriteError("mapping file exists", path=mp, expected="a new file", found="an existing file",
                              fix="move the old mapping away (it may be the only way to re-identify a data set)")
    return mp


def _write_mapping(path: Path, state: Deidentifier, files: dict[str, str]) -> None:
    data: dict[str, Any] = {
        "format": "medimg-deid-mapping", "version": 1, "date_shift_days": state.date_shift_days,
        "patients": dict(state.patient_map), "uids": dict(state.uid_map), "files": files,
    }
    if path.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, sort_keys=True)
    else:
        buf = io.StringIO()
        writer = safe_writer(buf, lineterminator="\n")
        writer.writerow(["kind", "original", "pseudonym"])
        for kind in ("patients", "uids", "files"):
            for original, new in sorted(data[kind].items()):
                writer.writerow([kind[:-1], original, new])
        writer.writerow(["date_shift_days", "", "" if state.date_shift_days is None else state.date_shift_days])
        text = buf.getvalue()
    with atomic_output(path, overwrite=False) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _plan_folder(root: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(input file, output path relative to the output root) for every file below ``root``, in sorted order, and
    the symbolic links below ``root`` that point outside it (never followed: they could pull another patient's
    files into the output).

    Folders become ``dirNNN`` and files ``IMNNNNN.dcm``, numbered in the sorted order of their original names.
    Linked folders are never entered.
    """
    plan: list[tuple[Path, Path]] = []
    outside: list[Path] = []
    real_root = root.resolve()

    def inside(p: Path) -> bool:
        return same_path(p.resolve(), real_root) or is_inside(p.resolve(), real_root)

    def walk(src: Path, rel: Path) -> None:
        entries = sorted(src.iterdir(), key=lambda p: p.name)
        files = []
        for p in entries:
            if p.name.startswith(".") or not p.is_file():
                continue
            if p.is_symlink() and not inside(p):
                outside.append(p)
                continue
            files.append(p)
        dirs = [p for p in entries if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
        for i, f in enumerate(files, start=1):
            plan.append((f, rel / f"IM{i:05d}.dcm"))
        for i, d in enumerate(dirs, start=1):
            walk(d, rel / f"dir{i:03d}")

    walk(root, Path())
    return plan, outside


def deidentify(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    date_shift_days: int | None = None,
    mapping_file: str | os.PathLike[str] | None = None,
    uid_secret: str | None = None,
    patient_id: str | None = None,
) -> DeidReport:
    """De-identify a DICOM file or a folder of DICOM files with the PS3.15 Annex E basic profile.

    Args:
        input_path: a DICOM file, or a folder searched recursively (non-DICOM files are skipped and counted).
        output_path: for a file input, the output file (must not exist); for a folder input, a new (or empty)
            folder outside the input, which receives the same tree with anonymised names.
        date_shift_days: shift every date by this many days (Modified Dates Option) instead of removing it.
        mapping_file: where to write the re-identification mapping (original Patient ID / UID / relative path ->
            new value), as ``.json`` or ``.csv``. Never written unless asked; refused inside the output or the
            input; never overwrites an existing file.
        uid_secret: the key of the UID and pseudonym derivation; the same secret gives the same new UIDs on
            every run. None: a random secret for this run only (not stored anywhere).
        patient_id: the pseudonym for Patient ID and Patient's Name; by default one derived from the original ID.

    Returns:
        A :class:`DeidReport`.

    Raises:
        ImageReadError: the input does not exist; a single input file is not DICOM; a folder holds no DICOM file.
        ImageWriteError: the output equals the input, lies inside the input folder, or already exists with
            content; the mapping file lies inside the output or input, or exists.
        InvalidParameterError: a bad ``date_shift_days``, ``uid_secret``, ``patient_id`` or mapping extension.

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "ct.dcm"
        >>> deidentify(get_testdata_file("CT_small.dcm"), out, uid_secret="s3cret").n_files
        1
    """
    _check_options(date_shift_days, uid_secret, patient_id)
    inp = check_input(input_path)
    out = Path(output_path)
    mapping = _check_mapping(mapping_file, inp, out)
    state = Deidentifier(secret=uid_secret or secrets.token_hex(32), date_shift_days=date_shift_days,
                         patient_id=patient_id)
    files_map: dict[str, str] = {}
    n_files = n_skipped = 0

    mapping_written = False
    committed = False
    try:
        if inp.is_file():
            try:
                ds = _read_dicom(inp)
            except Unreadable as exc:
                raise ImageReadError(
                    "not a readable DICOM file", path=inp,
                    expected="a DICOM file (with a SOP Class and Instance UID)", found=str(exc),
                    fix="check the file, or give the folder that holds the DICOM files") from None
            with atomic_output(out, inputs=[inp], overwrite=False) as tmp:
                try:
                    _deidentify_to(ds, state, tmp)
                except Unreadable as exc:
                    raise ImageReadError(
                        "not a readable DICOM file", path=inp, expected="a DICOM file whose values can be written",
                        found=str(exc), fix="check the file, or give the folder that holds the DICOM files") from None
                files_map[inp.name] = out.name
                n_files = 1
                if mapping is not None:
                    _write_mapping(mapping, state, files_map)
                    mapping_written = True
        else:
            with atomic_output_dir(out, inputs=[inp]) as tmp_root:
                unreadable: list[tuple[Path, str]] = []
                plan, outside = _plan_folder(inp)
                if outside:
                    n_skipped += len(outside)
                    logger.warning("skipped %d symbolic link(s) pointing outside the input folder, e.g. %s",
                                   len(outside), mask(outside[0].relative_to(inp).as_posix()))
                for src, rel in plan:
                    try:
                        ds = _read_dicom(src)
                    except Unreadable as exc:
                        n_skipped += 1
                        unreadable.append((src, str(exc)))
                        continue
                    dest = tmp_root / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        _deidentify_to(ds, state, dest)
                    except Unreadable as exc:
                        n_skipped += 1
                        unreadable.append((src, str(exc)))
                        continue
                    files_map[src.relative_to(inp).as_posix()] = rel.as_posix()
                    n_files += 1
                if unreadable and n_files:
                    first, why = unreadable[0]
                    logger.warning("skipped %d file(s) that are not readable DICOM, e.g. %s (%s)", len(unreadable),
                                   mask(first.relative_to(inp).as_posix()), why)
                if n_files == 0:
                    raise ImageReadError(
                        "no DICOM file found", path=inp, expected="a folder holding DICOM files",
                        found=f"{n_skipped} file(s), none readable as DICOM",
                        fix="check the folder, or give a single DICOM file")
                if mapping is not None:
                    _write_mapping(mapping, state, files_map)
                    mapping_written = True
        committed = True
    finally:
        if mapping_written and not committed and mapping is not None:
            mapping.unlink(missing_ok=True)  # the mapping of an output never committed is useless and sensitive

    if len(state.patient_map) > 1 and patient_id is not None:
        logger.warning("%d different patients were all given the same Patient ID", len(state.patient_map))
    logger.info("de-identified %d file(s), skipped %d; %d element(s) removed, %d replaced, %d UID(s) remapped",
                n_files, n_skipped, state.n_removed, state.n_replaced, len(state.uid_map))
    return DeidReport(
        output=out, n_files=n_files, n_skipped=n_skipped, n_elements_removed=state.n_removed,
        n_elements_replaced=state.n_replaced, n_uids_remapped=len(state.uid_map), date_shift_days=date_shift_days,
        mapping_file=mapping,
    )
