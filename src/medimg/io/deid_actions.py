"""The PS3.15 Annex E basic profile applied to one DICOM data set (what :mod:`medimg.io.deid` describes): the
run's state (:class:`Deidentifier`: secret, UID map, pseudonyms, counters) walks a data set and applies each
attribute's action from :mod:`medimg.io.deid_profile`; :func:`deidentify_dataset` also rebuilds the file meta and
writes the de-identification attributes. For images read from DICOM: :func:`deidentify_metadata`,
:func:`deidentify_template`, :func:`deidentify_image`, :func:`keeps_identifiers` and :data:`KEEP_IDENTIFIERS`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from medimg.core.errors import InvalidParameterError
from medimg.io.deid_profile import profile_action

if TYPE_CHECKING:  # pragma: no cover
    from pydicom.dataset import Dataset

    from medimg.core.image import Image


__all__ = ["KEEP_IDENTIFIERS", "METHOD_CODES", "MAX_SEQUENCE_DEPTH", "Deidentifier", "Unreadable",
           "deidentify_dataset", "deidentify_metadata", "deidentify_template", "deidentify_image",
           "keeps_identifiers"]


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


#: deepest sequence nesting accepted (real objects, SR trees included, stay far below this)
MAX_SEQUENCE_DEPTH = 64


class Unreadable(Exception):
    """Internal: why a file is not de-identified (a short reason without identifying values)."""

class Deidentifier:
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
            raise Unreadable(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
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
    state = Deidentifier(secret=secrets.token_hex(32), date_shift_days=None, patient_id=None)
    return deidentify_dataset(ds, state)


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


def deidentify_dataset(ds: Dataset, state: Deidentifier) -> Dataset:
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
