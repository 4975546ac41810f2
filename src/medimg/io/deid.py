"""De-identification of DICOM files: PS3.15 Annex E, Basic Application Level Confidentiality Profile.

This module owns :func:`deidentify` (a file or a folder in, a new file or folder out), the :class:`DeidReport`
it returns, :func:`mask`, the one way to mention an identifying value in a log, and :func:`deidentify_image`
(with :func:`deidentify_metadata` and :func:`deidentify_template`), which the .npz and DICOM writers and
``medimg convert`` use so that outputs keep no identifying values unless asked to. The action table itself
lives in :mod:`medimg.io.deid_profile`.

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
import datetime as _dt
import hashlib
import hmac
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
from medimg.io.deid_profile import profile_action
from medimg.io.files import atomic_output, atomic_output_dir, check_input, is_inside, same_path

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medimg.core.image import Image

__all__ = ["KEEP_IDENTIFIERS", "METHOD_CODES", "DeidReport", "deidentify", "deidentify_image", "deidentify_metadata",
           "deidentify_template", "keeps_identifiers", "mask"]

logger = logging.getLogger(__name__)

#: CID 7050 codes written into De-identification Method Code Sequence
METHOD_CODES = {
    "113100": "Basic Application Confidentiality Profile",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
}

_DICOM_ROOT = "1.2.840.10008."
#: UI attributes that name a class, a scheme or the writing software, never an instance: kept as they are
_CLASS_UID_KEYWORDS = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile", "MediaStorageSOPClassUID",
    "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile", "CodingSchemeUID", "ContextUID",
    "MappingResourceUID", "ImplementationClassUID", "RelatedGeneralSOPClassUID", "SOPClassesInStudy",
    "AffectedSOPClassUID", "RequestedSOPClassUID",
})
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
#: not part of the Modified Dates Option: follow the table even when dates are shifted
_NOT_SHIFTED = frozenset({0x00100030, 0x00100032})  # PatientBirthDate, PatientBirthTime
_DUMMY_TEXT = "ANONYMOUS"
_DUMMY_BY_VR: dict[str, Any] = {
    "DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0, "AT": 0,
}
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
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


class _Deidentifier:
    """The state shared by every file of one run: secret, UID map, pseudonyms, counters."""

    def __init__(self, *, secret: str, date_shift_days: int | None, patient_id: str | None) -> None:
        self._key = secret.encode("utf-8")
        self.date_shift_days = date_shift_days
        self.patient_id = patient_id
        self.uid_map: dict[str, str] = {}
        self.patient_map: dict[str, str] = {}
        self.n_removed = 0
        self.n_replaced = 0
        self._depth = 0

    # -- derived values -------------------------------------------------------------------------------------
    def _digest(self, kind: bytes, value: str) -> bytes:
        return hmac.new(self._key, kind + b"\0" + value.encode("utf-8"), hashlib.sha256).digest()

    def new_uid(self, uid: str) -> str:
        uid = str(uid).strip().rstrip("\0").strip()
        if not uid:
            return uid
        new = self.uid_map.get(uid)
        if new is None:
            new = "2.25." + str(int.from_bytes(self._digest(b"uid", uid)[:16], "big"))
            self.uid_map[uid] = new
        return new

    def pseudonym(self, original_id: str) -> str:
        original_id = str(original_id).strip()
        new = self.patient_map.get(original_id)
        if new is None:
            new = self.patient_id or "ANON" + self._digest(b"patient", original_id).hex()[:12].upper()
            self.patient_map[original_id] = new
        return new

    # -- the walk ----------------------------------------------------------------------------------------------
    def clean(self, ds: Dataset, pseudonym: str, depth: int = 0) -> None:
        """Apply the profile to ``ds`` in place, recursing into sequence items (at most MAX_SEQUENCE_DEPTH deep)."""
        from pydicom.datadict import keyword_for_tag

        if depth > MAX_SEQUENCE_DEPTH:
            raise _Unreadable(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        self._depth = depth

        for tag in list(ds.keys()):
            tag_int = int(tag)
            group, element = tag_int >> 16, tag_int & 0xFFFF
            if element == 0 or group == 0:  # group lengths (stale once elements go) and command-set elements
                del ds[tag]
                continue
            if group % 2 == 1 or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
                # private attributes, curves, and the whole overlay group (data and comments are X)
                del ds[tag]
                self.n_removed += 1
                continue
            elem = ds[tag]
            action = profile_action(tag_int)
            vr = elem.VR
            if tag_int in (_PATIENT_NAME, _PATIENT_ID):
                if str(elem.value or "") != pseudonym:
                    elem.value = pseudonym
                    self.n_replaced += 1
                continue
            if action is None:
                if vr == "SQ":
                    self._recurse(elem, pseudonym)
                elif vr == "UI" and keyword_for_tag(tag_int) not in _CLASS_UID_KEYWORDS:
                    self._remap_uids(elem)
                elif vr in ("DA", "DT") and self.date_shift_days is not None:
                    self._shift(ds, tag, elem)
                continue
            if (self.date_shift_days is not None and vr in ("DA", "DT", "TM") and action not in ("U", "K")
                    and tag_int not in _NOT_SHIFTED):
                if vr != "TM":  # a shift by whole days leaves the time of day as it was
                    self._shift(ds, tag, elem)
                continue
            self._apply(ds, tag, elem, action, pseudonym)

    def _recurse(self, elem: Any, pseudonym: str) -> None:
        depth = self._depth
        for item in elem.value or []:
            self.clean(item, pseudonym, depth + 1)
        self._depth = depth

    def _apply(self, ds: Dataset, tag: Any, elem: Any, action: str, pseudonym: str) -> None:
        vr = elem.VR
        if action == "K":
            if vr == "SQ":
                self._recurse(elem, pseudonym)
        elif action in ("X", "X/Z", "X/D", "X/Z/D", "C"):
            del ds[tag]
            self.n_removed += 1
        elif action in ("Z", "Z/D"):
            if elem.is_empty:
                return
            elem.value = [] if vr == "SQ" else (b"" if vr in ("OB", "OW", "UN") else "")
            self.n_replaced += 1
        elif action == "U" or action == "X/Z/U*":
            if vr == "SQ":
                self._recurse(elem, pseudonym)
            else:
                self._remap_uids(elem)
        elif action == "D":
            if vr == "SQ":
                del ds[tag]
                self.n_removed += 1
            elif vr == "UI":
                self._remap_uids(elem)
            else:
                elem.value = _dummy(vr)
                self.n_replaced += 1
        else:  # pragma: no cover - guarded by a test over the table
            raise InvalidParameterError("unknown action in the profile table", parameter="action",
                                        expected="one of D Z X K C U and their combinations", found=action)

    def _remap_uids(self, elem: Any) -> None:
        if elem.is_empty:
            return
        values = elem.value if elem.VM > 1 else [elem.value]
        new = []
        for v in values:
            text = str(v).strip().rstrip("\0")
            new.append(text if (not text or text.startswith(_DICOM_ROOT)) else self.new_uid(text))
        if new != [str(v).strip().rstrip("\0") for v in values]:
            elem.value = new if elem.VM > 1 else new[0]
            self.n_replaced += 1

    def _shift(self, ds: Dataset, tag: Any, elem: Any) -> None:
        if elem.is_empty:
            return
        assert self.date_shift_days is not None
        values = elem.value if elem.VM > 1 else [elem.value]
        shifted = [_shift_date(str(v), self.date_shift_days, dt=elem.VR == "DT") for v in values]
        if any(s is None for s in shifted):  # a value that cannot be shifted is not kept
            del ds[tag]
            self.n_removed += 1
            return
        elem.value = shifted if elem.VM > 1 else shifted[0]
        self.n_replaced += 1


# ---- images read from DICOM ---------------------------------------------------------------------------------
#: Image metadata key that opts an image into keeping identifying values when it is written (the writers of
#: .npz and DICOM series read it, and never store it). ``medimg convert --keep-identifiers`` sets it.
KEEP_IDENTIFIERS = "keep_identifiers"
#: Image metadata entries that come from a DICOM attribute: the basic profile's action for that attribute decides
#: whether the entry is kept (no action or K) or dropped (U, X, Z, D, ...: a UID of the source, a description).
_METADATA_ATTRIBUTES = {
    "series_uid": "SeriesInstanceUID", "study_uid": "StudyInstanceUID",
    "frame_of_reference_uid": "FrameOfReferenceUID", "series_description": "SeriesDescription",
    "manufacturer": "Manufacturer",
}
#: Entries that are not DICOM attributes but identify the source: file paths (which often carry names, IDs or
#: dates), free-text descriptions (NIfTI ``descrip``), the DICOM header template (de-identified separately).
_IDENTIFYING_KEYS = frozenset({"source_path", "description", "dicom_template"})


def deidentify_metadata(metadata: Any) -> dict[str, Any]:
    """A copy of an image's metadata without identifying values, following the basic profile (Table E.1-1).

    Entries taken from a DICOM attribute (series/study/frame-of-reference UIDs, series description, ...) are
    kept only where the profile keeps that attribute; the source path, free-text descriptions and the DICOM
    header template are dropped; the :data:`KEEP_IDENTIFIERS` flag is dropped too. Modality, window, rescale,
    transfer syntax, acquisition parameters, spacing source and photometric interpretation are kept.

    >>> deidentify_metadata({"modality": "CT", "series_uid": "1.2.3", "source_path": "/data/Smith/ct"})
    {'modality': 'CT'}
    """
    from pydicom.datadict import tag_for_keyword

    out: dict[str, Any] = {}
    for key, value in dict(metadata).items():
        if key in _IDENTIFYING_KEYS or key == KEEP_IDENTIFIERS:
            continue
        attribute = _METADATA_ATTRIBUTES.get(key)
        if attribute is not None and profile_action(int(tag_for_keyword(attribute))) not in (None, "K"):
            continue
        out[key] = value
    return out


def deidentify_template(template: Dataset) -> Dataset:
    """A de-identified copy of a DICOM header (the basic profile, as :func:`deidentify` applies it to a file):
    new UIDs from a random secret used once (not linkable to the source), a pseudonymous Patient's Name/ID, dates
    removed or emptied, private, curve and overlay groups removed, Patient Identity Removed = YES."""
    import copy

    ds = copy.deepcopy(template)
    state = _Deidentifier(secret=secrets.token_hex(32), date_shift_days=None, patient_id=None)
    return _deidentify_dataset(ds, state)


def deidentify_image(image: Image) -> Image:
    """``image`` with metadata that holds no identifying values (:func:`deidentify_metadata`) and, for an image
    read from DICOM, a de-identified header template (:func:`deidentify_template`) for a DICOM writer.

    Voxels are not changed (burned-in text stays: use a pixel-cleaning tool for that).
    """
    meta = deidentify_metadata(image.metadata)
    template = image.metadata.get("dicom_template")
    if template is not None:
        meta["dicom_template"] = deidentify_template(template)
    return image.replace(metadata=meta)


def keeps_identifiers(image: Image) -> bool:
    """Whether ``image`` was opted into keeping identifying values when written (:data:`KEEP_IDENTIFIERS`)."""
    return image.metadata.get(KEEP_IDENTIFIERS) is True


def _dummy(vr: str) -> Any:
    if vr in _DUMMY_BY_VR:
        return _DUMMY_BY_VR[vr]
    if vr in _TEXT_VRS:
        return _DUMMY_TEXT
    return b""  # OB, OW, UN, ...: no meaningful dummy; an empty value keeps nothing


def _shift_date(value: str, days: int, *, dt: bool) -> str | None:
    """Shift a DA value (or the date part of a DT value) by ``days``; None if it is not a full date."""
    text = value.strip()
    if not dt and len(text) == 10 and text[4] == "." and text[7] == ".":  # ACR-NEMA style YYYY.MM.DD
        text = text.replace(".", "")
    head, tail = text[:8], text[8:]
    if len(head) != 8 or not head.isdigit() or (not dt and tail):
        return None
    try:
        date = _dt.datetime.strptime(head, "%Y%m%d").date() + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{date.year:04d}{date.month:02d}{date.day:02d}" + tail


def _deidentify_dataset(ds: Dataset, state: _Deidentifier) -> Dataset:
    """De-identify one data set in place with the run's ``state`` (UID map, secret, counters); return it."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    old_meta = getattr(ds, "file_meta", None)
    transfer_syntax = old_meta.get("TransferSyntaxUID") if old_meta is not None else None
    if transfer_syntax is None:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        transfer_syntax = (ImplicitVRLittleEndian if implicit else
                           (ExplicitVRLittleEndian if little else ExplicitVRBigEndian))
    sop_class = (old_meta.get("MediaStorageSOPClassUID") if old_meta is not None else None) or ds.get(
        "SOPClassUID")
    meta_instance = old_meta.get("MediaStorageSOPInstanceUID") if old_meta is not None else None

    original_id = str(ds.get("PatientID", "") or ds.get("PatientName", "") or "")
    pseudonym = state.pseudonym(original_id)
    state.clean(ds, pseudonym)
    # Top-level Patient's Name / ID are always present in the output, as the pseudonym.
    for keyword in ("PatientName", "PatientID"):
        if keyword not in ds:
            setattr(ds, keyword, pseudonym)

    shifted = state.date_shift_days is not None
    ds.PatientIdentityRemoved = "YES"
    from medimg import __version__

    method = f"DICOM PS3.15 Annex E Basic Profile; medimg {__version__}"
    ds.DeidentificationMethod = (method + "; dates shifted" if shifted else method)[:64]
    codes = ["113100"] + (["113107"] if shifted else [])
    seq = Sequence()
    from pydicom.dataset import Dataset as _Dataset

    for code in codes:
        item = _Dataset()
        item.CodeValue = code
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = METHOD_CODES[code]
        seq.append(item)
    ds.DeidentificationMethodCodeSequence = seq
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if shifted else "REMOVED"

    meta = FileMetaDataset()
    if sop_class:
        meta.MediaStorageSOPClassUID = sop_class
    new_instance = ds.get("SOPInstanceUID") or (state.new_uid(meta_instance) if meta_instance else None)
    if new_instance:
        meta.MediaStorageSOPInstanceUID = new_instance
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    return ds


def _write_dataset(ds: Dataset, path: Path) -> None:
    """Write one de-identified data set as a DICOM file (Part 10 format, same transfer syntax)."""
    ds.save_as(path, enforce_file_format=True)


def _deidentify_to(ds: Dataset, state: _Deidentifier, dest: Path) -> None:
    """De-identify ``ds`` and write it to ``dest``; a damaged value that pydicom cannot convert or write back
    (hostile files: wrong VRs, command-set elements, values of the wrong type) raises _Unreadable and leaves no
    file at ``dest``; a failing disk raises ImageWriteError."""
    try:
        _write_dataset(_deidentify_dataset(ds, state), dest)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise ImageWriteError("cannot write the de-identified file", path=dest, found=f"{type(exc).__name__}: {exc}",
                              fix="check free disk space and permissions") from exc
    except (_Unreadable, MemoryError):
        dest.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on damaged values
        dest.unlink(missing_ok=True)
        logger.debug("cannot de-identify/write a data set (%s)", type(exc).__name__)
        raise _Unreadable(f"a value that cannot be de-identified or written back ({type(exc).__name__})") from exc


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


#: deepest sequence nesting accepted (real objects, SR trees included, stay far below this)
MAX_SEQUENCE_DEPTH = 64


class _Unreadable(Exception):
    """Internal: why a file is not de-identified (a short reason without identifying values)."""


def _check_depth(ds: Dataset) -> None:
    """Decode every value now, so a corrupt value fails here and not mid-write, without recursion: sequences
    nested deeper than MAX_SEQUENCE_DEPTH are refused."""
    stack = [(ds, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_SEQUENCE_DEPTH:
            raise _Unreadable(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        for tag in list(item.keys()):
            elem = item[tag]
            if elem.VR == "SQ":
                stack.extend((sub, depth + 1) for sub in (elem.value or ()))


def _read_dicom(path: Path) -> Dataset:
    """The data set in ``path``, fully decoded; raises _Unreadable when it is not a readable DICOM file."""
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
        raise _Unreadable(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels") from exc
    except _Unreadable:
        raise
    except MemoryError:
        raise
    except (InvalidDicomError, Exception) as exc:  # noqa: BLE001 - pydicom has no single base class
        logger.debug("not readable as DICOM (%s)", type(exc).__name__)
        raise _Unreadable(f"something pydicom cannot read as DICOM ({type(exc).__name__})") from exc
    if truncated:
        logger.debug("truncated DICOM file skipped")
        raise _Unreadable("a DICOM file cut short")
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise _Unreadable("a file without SOP Class and Instance UIDs")
    if "Rows" in ds and not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise _Unreadable("an image cut before its pixel data")
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


def _write_mapping(path: Path, state: _Deidentifier, files: dict[str, str]) -> None:
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
    state = _Deidentifier(secret=uid_secret or secrets.token_hex(32), date_shift_days=date_shift_days,
                          patient_id=patient_id)
    files_map: dict[str, str] = {}
    n_files = n_skipped = 0

    mapping_written = False
    committed = False
    try:
        if inp.is_file():
            try:
                ds = _read_dicom(inp)
            except _Unreadable as exc:
                raise ImageReadError(
                    "not a readable DICOM file", path=inp,
                    expected="a DICOM file (with a SOP Class and Instance UID)", found=str(exc),
                    fix="check the file, or give the folder that holds the DICOM files") from None
            with atomic_output(out, inputs=[inp], overwrite=False) as tmp:
                try:
                    _deidentify_to(ds, state, tmp)
                except _Unreadable as exc:
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
                    except _Unreadable as exc:
                        n_skipped += 1
                        unreadable.append((src, str(exc)))
                        continue
                    dest = tmp_root / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        _deidentify_to(ds, state, dest)
                    except _Unreadable as exc:
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

