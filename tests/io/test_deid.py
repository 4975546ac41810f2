"""De-identification (PS3.15 Annex E basic profile) on real DICOM: the brain MRI study and pydicom's test files."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from medimg.core.errors import ImageReadError, ImageWriteError, InvalidParameterError
from medimg.io import deid as deid_mod
from medimg.io.deid import DeidReport, deidentify, mask
from medimg.io.deid_profile import ACTIONS, BASIC_PROFILE, keyword_table, profile_action
from medimg.testing import require_data

DICOM_ROOT = "1.2.840.10008."
CLASS_UIDS = {"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
              "ImplementationClassUID", "ReferencedSOPClassUIDInFile"}
PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm"]


# ---------------------------------------------------------------------------------------------- helpers
def elements(ds):
    """Every data element of ``ds``, nested sequence items included (file meta too)."""
    out = list(ds.file_meta) if getattr(ds, "file_meta", None) is not None else []
    out += list(ds.iterall())
    return out


def original_uids(ds) -> set[str]:
    uids = set()
    for e in elements(ds):
        if e.VR == "UI" and not e.is_empty and keyword_for_tag(e.tag) not in CLASS_UIDS:
            for v in (e.value if e.VM > 1 else [e.value]):
                v = str(v).strip("\0 ")
                if v and not v.startswith(DICOM_ROOT):
                    uids.add(v)
    return uids


def table_values(ds) -> dict[int, set]:
    """Non-empty original values of attributes the table does not let through unchanged."""
    vals: dict[int, set] = {}
    for e in ds.iterall():
        action = profile_action(int(e.tag))
        if action in (None, "K", "X/Z/U*") or e.VR == "SQ" or e.is_empty:
            continue
        vals.setdefault(int(e.tag), set()).add(str(e.value))
    return vals


def assert_profile_applied(original, output) -> None:
    forbidden = table_values(original)
    for e in output.iterall():
        assert not e.tag.is_private, f"private tag {e.tag} kept"
        assert not (0x6000 <= e.tag.group <= 0x60FF), f"overlay element {e.tag} kept"
        if int(e.tag) in forbidden and not e.is_empty and e.VR != "SQ":
            if int(e.tag) in (0x00100010, 0x00100020):
                continue  # pseudonym, checked separately
            assert str(e.value) not in forbidden[int(e.tag)] or str(e.value) == "ANONYMOUS", (
                f"{keyword_for_tag(e.tag)} kept its original value")
    assert output.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in output.DeidentificationMethodCodeSequence]
    assert "113100" in codes
    assert output.file_meta.MediaStorageSOPInstanceUID == output.SOPInstanceUID


def assert_no_bytes(paths, needles) -> None:
    # pydicom's own root names the writing software in Implementation Class UID, not an instance
    needles = [n.encode() for n in needles if n and not pydicom.uid.PYDICOM_IMPLEMENTATION_UID.startswith(n)]
    for p in paths:
        data = Path(p).read_bytes()
        for n in needles:
            assert n not in data, f"original value {mask(n.decode(errors='replace'))} found in {p}"


# ---------------------------------------------------------------------------------------------- the table
def test_table_covers_well_known_attributes():
    assert len(BASIC_PROFILE) >= 600
    assert set(BASIC_PROFILE.values()) <= set(ACTIONS)
    expected = {
        "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z", "AccessionNumber": "Z",
        "ReferringPhysicianName": "Z", "StudyDate": "Z", "StudyTime": "Z", "StudyID": "Z",
        "InstitutionName": "X/Z/D", "StationName": "X/Z/D", "DeviceSerialNumber": "X/Z/D", "OperatorsName": "X/Z/D",
        "PerformingPhysicianName": "X", "OtherPatientIDs": "X", "OtherPatientIDsSequence": "X",
        "OtherPatientNames": "X", "PatientAddress": "X", "PatientAge": "X", "PatientWeight": "X",
        "PatientSize": "X", "RequestAttributesSequence": "X", "InstitutionAddress": "X", "StudyDescription": "X",
        "SeriesDescription": "X", "PhysiciansOfRecord": "X", "ImageComments": "X", "MedicalAlerts": "X",
        "AdditionalPatientHistory": "X", "PatientComments": "X", "IssuerOfPatientID": "X",
        "StationAETitle": "X", "NameOfPhysiciansReadingStudy": "X", "ContentDate": "Z/D", "ContentTime": "Z/D",
        "ContrastBolusAgent": "Z/D", "AcquisitionDate": "X/Z", "AcquisitionTime": "X/Z", "SeriesDate": "X/D",
        "SeriesTime": "X/D", "ProtocolName": "X/D", "AcquisitionDateTime": "X/Z/D",
        "ReferencedImageSequence": "X/Z/U*", "SourceImageSequence": "X/Z/U*", "StudyInstanceUID": "U",
        "SeriesInstanceUID": "U", "SOPInstanceUID": "U", "FrameOfReferenceUID": "U",
        "ReferencedSOPInstanceUID": "U", "MediaStorageSOPInstanceUID": "U", "ReferencedFrameOfReferenceUID": "U",
        "IrradiationEventUID": "U", "RTPlanLabel": "D", "StructureSetLabel": "D", "ROIName": "Z",
        "ReferencedPerformedProcedureStepSequence": "X/Z/D", "ReferencedStudySequence": "X/Z",
    }
    for keyword, action in expected.items():
        assert BASIC_PROFILE[tag_for_keyword(keyword)] == action, keyword
    table = keyword_table()
    assert table["PatientName"] == "Z" and len(table) == len(BASIC_PROFILE)


def test_profile_action_rules_for_private_curves_overlays():
    assert profile_action(0x00091002) == "X"  # private
    assert profile_action(0x50000010) == "X"  # curve group
    assert profile_action(0x60023000) == "X" and profile_action(0x60004000) == "X"
    assert profile_action(0x00280010) is None  # Rows: not in the table, kept


def test_mask():
    assert mask("Pat^Smith") == "Pa***"
    assert mask("ABC") == "***" and mask(None) == "***"


# ---------------------------------------------------------------------------------------------- brain study
@pytest.fixture(scope="module")
def brain_run(tmp_path_factory):
    study = require_data("brain_mri_dicom", "Study1")
    root = tmp_path_factory.mktemp("brain")
    out, mapping = root / "out", root / "keys" / "mapping.json"
    report = deidentify(study, out, uid_secret="unit-test-secret", mapping_file=mapping)
    return study, out, mapping, report


def test_brain_study_counts_and_layout(brain_run):
    _study, out, mapping, report = brain_run
    assert isinstance(report, DeidReport)
    assert report.n_files == 120 and report.n_skipped == 0
    assert report.n_elements_removed > 0 and report.n_elements_replaced > 0
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == 120
    assert len({p.parent for p in outputs}) == 5  # same tree shape: 5 series folders
    for p in outputs:  # anonymised names: nothing of the original names
        assert p.name.startswith("IM") and p.parent.name.startswith("dir")
    assert json.loads(json.dumps(report.to_dict()))["n_files"] == 120
    assert not mapping.is_relative_to(out) and mapping.exists()


def test_brain_study_every_element(brain_run):
    study, out, mapping, _report = brain_run
    files = json.loads(mapping.read_text())["files"]
    assert len(files) == 120
    study_uids, series_map, for_map, sop_map = set(), {}, {}, {}
    pairs = []
    for rel_in, rel_out in files.items():
        orig = pydicom.dcmread(study / rel_in)
        new = pydicom.dcmread(out / rel_out)
        pairs.append((orig, new))
        assert_profile_applied(orig, new)
        assert new.PixelData == orig.PixelData
        assert str(new.PatientName) == new.PatientID != orig.PatientID
        study_uids.add(new.StudyInstanceUID)
        series_map.setdefault(orig.SeriesInstanceUID, set()).add(new.SeriesInstanceUID)
        for_map.setdefault(orig.FrameOfReferenceUID, set()).add(new.FrameOfReferenceUID)
        sop_map[orig.SOPInstanceUID] = new.SOPInstanceUID
    assert len(study_uids) == 1 and not study_uids & {o.StudyInstanceUID for o, _ in pairs}
    assert all(len(v) == 1 for v in series_map.values()) and len(series_map) == 5
    assert len({next(iter(v)) for v in series_map.values()}) == 5  # 1:1
    assert all(len(v) == 1 for v in for_map.values())
    # references to images of the study point at their new SOP Instance UIDs
    # (or, for images outside this folder, are remapped the same way in every file)
    ref_map: dict[str, set] = {}
    for orig, new in pairs:
        o_seq, n_seq = orig.get("ReferencedImageSequence", []), new.get("ReferencedImageSequence", [])
        assert len(o_seq) == len(n_seq)
        for o_item, n_item in zip(o_seq, n_seq):
            o_uid, n_uid = o_item.ReferencedSOPInstanceUID, n_item.ReferencedSOPInstanceUID
            assert n_uid != o_uid and n_uid.startswith("2.25.")
            if o_uid in sop_map:
                assert n_uid == sop_map[o_uid]
            ref_map.setdefault(o_uid, set()).add(n_uid)
    assert ref_map and all(len(v) == 1 for v in ref_map.values())


def test_brain_study_no_original_bytes(brain_run):
    study, out, _mapping, _report = brain_run
    uids, names = set(), set()
    for p in study.rglob("*.dcm"):
        ds = pydicom.dcmread(p)
        uids |= original_uids(ds)
        names |= {str(ds.PatientName), str(ds.PatientID), *str(ds.PatientName).split("^")}
        names |= {str(ds.get("AccessionNumber", "")), str(ds.get("InstitutionName", ""))}
    assert uids and names
    assert_no_bytes(sorted(out.rglob("*.dcm")), sorted(uids | {n for n in names if len(n) >= 4}))


def test_same_secret_gives_same_uids_and_date_shift(tmp_path):
    study = require_data("brain_mri_dicom", "Study1")
    series = min(p for p in study.iterdir() if p.is_dir())
    src = min(series.glob("*.dcm"))
    a = deidentify(src, tmp_path / "a.dcm", uid_secret="k", date_shift_days=-30)
    deidentify(src, tmp_path / "b.dcm", uid_secret="k", date_shift_days=-30)
    deidentify(src, tmp_path / "c.dcm")  # random secret
    da, db, dc = (pydicom.dcmread(tmp_path / n) for n in ("a.dcm", "b.dcm", "c.dcm"))
    orig = pydicom.dcmread(src)
    assert da.StudyInstanceUID == db.StudyInstanceUID != dc.StudyInstanceUID
    assert a.date_shift_days == -30
    shifted = dt.datetime.strptime(da.StudyDate, "%Y%m%d") - dt.datetime.strptime(orig.StudyDate, "%Y%m%d")
    assert shifted.days == -30
    codes = [i.CodeValue for i in da.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"] and "dates shifted" in da.DeidentificationMethod
    assert da.StudyTime == orig.StudyTime  # whole-day shift keeps times
    assert dc.StudyDate == "" and "AcquisitionDate" not in dc  # no shift: Z and X/Z
    assert da.PatientBirthDate == ""  # not part of the modified-dates option


# ---------------------------------------------------------------------------------------------- pydicom files
@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_files(name, tmp_path):
    src = Path(get_testdata_file(name))
    orig = pydicom.dcmread(src, force=True)
    out = tmp_path / "out.dcm"
    report = deidentify(src, out, patient_id="SUBJ-001", mapping_file=tmp_path / "keys.csv")
    assert report.n_files == 1
    new = pydicom.dcmread(out)
    assert_profile_applied(orig, new)
    assert new.PatientID == "SUBJ-001" == str(new.PatientName)
    if "PixelData" in orig:
        assert new.PixelData == orig.PixelData
    needles = original_uids(orig) | {str(orig.get("PatientName", "")), str(orig.get("PatientID", ""))}
    assert_no_bytes([out], [n for n in needles if len(n) >= 4])
    assert "kind,original,pseudonym" in (tmp_path / "keys.csv").read_text()


def test_private_tags_removed_from_ct_small(tmp_path):
    src = get_testdata_file("CT_small.dcm")
    assert any(e.tag.is_private for e in pydicom.dcmread(src).iterall())
    report = deidentify(src, tmp_path / "ct.dcm")
    assert not any(e.tag.is_private for e in pydicom.dcmread(tmp_path / "ct.dcm").iterall())
    assert report.n_elements_removed >= 179


def test_nested_sequences_rtstruct(tmp_path):
    src = get_testdata_file("rtstruct.dcm")
    orig = pydicom.dcmread(src, force=True)
    deidentify(src, tmp_path / "rs.dcm", uid_secret="x")
    new = pydicom.dcmread(tmp_path / "rs.dcm")
    # the frame of reference inside the nested sequences is remapped consistently with the top level
    o_ref = orig.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    n_ref = new.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    assert n_ref != o_ref and n_ref.startswith("2.25.")
    if "FrameOfReferenceUID" in orig and orig.FrameOfReferenceUID == o_ref:
        assert new.FrameOfReferenceUID == n_ref
    assert all(not item.get("ROIName") for item in new.StructureSetROISequence)  # ROIName: Z


# ---------------------------------------------------------------------------------------------- safety
def _small_folder(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "a" / "1.2.3.4.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), src / "b" / "mr.dcm")
    shutil.copy(get_testdata_file("rtplan.dcm"), src / "b" / "plan.dcm")
    return src


def test_refuses_output_equal_or_inside_input(tmp_path):
    src = _small_folder(tmp_path)
    with pytest.raises(ImageWriteError):
        deidentify(src, src)
    with pytest.raises(ImageWriteError):
        deidentify(src, src / "out")
    f = src / "b" / "mr.dcm"
    before = f.read_bytes()
    with pytest.raises(ImageWriteError):
        deidentify(f, f)
    assert f.read_bytes() == before and not (src / "out").exists()


def test_mapping_kept_apart(tmp_path):
    src = _small_folder(tmp_path)
    out = tmp_path / "out"
    for bad in (out / "map.json", src / "map.json"):
        with pytest.raises(ImageWriteError):
            deidentify(src, out, mapping_file=bad)
        assert not out.exists() and not bad.exists()
    with pytest.raises(InvalidParameterError):
        deidentify(src, out, mapping_file=tmp_path / "map.txt")
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(ImageWriteError):
        deidentify(src, out, mapping_file=tmp_path / "old.json")
    assert (tmp_path / "old.json").read_text() == "{}" and not out.exists()
    report = deidentify(src, out, mapping_file=tmp_path / "keys" / "map.json")
    data = json.loads((tmp_path / "keys" / "map.json").read_text())
    assert report.mapping_file == tmp_path / "keys" / "map.json"
    assert set(data) >= {"patients", "uids", "files"} and len(data["files"]) == 3
    assert "1.2.3.4.dcm" not in " ".join(p.name for p in out.rglob("*"))


def test_corrupt_and_non_dicom_files_are_skipped(tmp_path):
    src = _small_folder(tmp_path)
    (src / "a" / "notes.txt").write_text("Patient John Doe, see attached")
    (src / "b" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    truncated = Path(get_testdata_file("CT_small.dcm")).read_bytes()[:2000]
    (src / "b" / "truncated.dcm").write_bytes(truncated)
    report = deidentify(src, tmp_path / "out")
    assert (report.n_files, report.n_skipped) == (3, 3)
    outputs = sorted((tmp_path / "out").rglob("*"))
    assert len([p for p in outputs if p.is_file()]) == 3
    assert all(pydicom.dcmread(p).PatientIdentityRemoved == "YES" for p in outputs if p.is_file())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_failure_midway_leaves_nothing(tmp_path, monkeypatch):
    src = _small_folder(tmp_path)
    calls = {"n": 0}
    real = deid_mod._write_dataset

    def failing(ds, path):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        real(ds, path)

    monkeypatch.setattr(deid_mod, "_write_dataset", failing)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OSError, match="simulated"):
        deidentify(src, tmp_path / "out", mapping_file=tmp_path / "map.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no mapping, no temporary folder


def test_non_dicom_single_input_names_the_file(tmp_path):
    bad = tmp_path / "report.txt"
    bad.write_text("not dicom at all")
    with pytest.raises(ImageReadError, match="report.txt"):
        deidentify(bad, tmp_path / "out.dcm")
    assert not (tmp_path / "out.dcm").exists()
    empty_dir = tmp_path / "docs"
    empty_dir.mkdir()
    (empty_dir / "a.txt").write_text("x")
    with pytest.raises(ImageReadError):
        deidentify(empty_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_options(tmp_path):
    src = get_testdata_file("MR_small.dcm")
    for kwargs in ({"date_shift_days": 0}, {"date_shift_days": 1.5}, {"uid_secret": ""},
                   {"patient_id": "a\\b"}, {"patient_id": "x" * 65}):
        with pytest.raises(InvalidParameterError):
            deidentify(src, tmp_path / "o.dcm", **kwargs)
    assert not (tmp_path / "o.dcm").exists()


def test_logs_hold_no_identifying_value(tmp_path, caplog):
    src = _small_folder(tmp_path)
    (src / "a" / "Doe_John.txt").write_text("x")
    with caplog.at_level(logging.DEBUG, logger="medimg"):
        deidentify(src, tmp_path / "out")
    text = caplog.text
    assert "Doe_John" not in text and "CompressedSamples" not in text and "1.2.3.4" not in text


# ---------------------------------------------------------------------------------------------- hostile input
def _nested(path: Path, levels: int) -> Path:
    """CT_small with a sequence nested ``levels`` deep, written as raw bytes (pydicom's writer recurses)."""
    import io
    import struct

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    if "DataSetTrailingPadding" in ds:  # (FFFC,FFFC) would come before the nesting appended below
        del ds.DataSetTrailingPadding
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    seq = struct.pack("<HH", 0x0040, 0xA730) + b"SQ\0\0" + b"\xff\xff\xff\xff"  # ContentSequence
    ends = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    # (FFFA,FFFA) Digital Signatures Sequence: the last public tag, so the nesting follows the pixel data
    body = struct.pack("<HH", 0xFFFA, 0xFFFA) + b"SQ\0\0" + b"\xff\xff\xff\xff" + (item + seq) * levels
    body += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0) + ends * levels
    path.write_bytes(buf.getvalue() + body)
    return path


@pytest.mark.parametrize("levels", [100, 5000])
def test_deeply_nested_sequences_are_one_error(levels, tmp_path):
    src = _nested(tmp_path / "deep.dcm", levels)
    with pytest.raises(ImageReadError, match="nested deeper than 64 levels"):
        deidentify(src, tmp_path / "out.dcm")
    assert not (tmp_path / "out.dcm").exists()


def test_deeply_nested_file_in_a_folder_is_skipped(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "a.dcm")
    _nested(src / "b.dcm", 5000)
    report = deidentify(src, tmp_path / "out")
    assert report.n_files == 1 and report.n_skipped == 1


def test_moderate_nesting_is_still_de_identified(tmp_path):
    src = _nested(tmp_path / "ok.dcm", 20)
    deidentify(src, tmp_path / "out.dcm")
    assert pydicom.dcmread(tmp_path / "out.dcm").PatientIdentityRemoved == "YES"


def test_symlinks_out_of_the_input_folder_are_not_followed(tmp_path, caplog):
    import os

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "a.dcm")
    other = tmp_path / "other_patient"
    other.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), other / "b.dcm")
    os.symlink(other / "b.dcm", src / "b.dcm")
    os.symlink(src / "a.dcm", src / "c.dcm")  # a link inside the input is followed
    with caplog.at_level(logging.WARNING, logger="medimg"):
        report = deidentify(src, tmp_path / "out")
    assert report.n_files == 2 and report.n_skipped == 1
    modalities = {pydicom.dcmread(f).Modality for f in (tmp_path / "out").rglob("*.dcm")}
    assert modalities == {"CT"}  # the MR of the other patient was not included
    assert sum("outside the input folder" in r.getMessage() for r in caplog.records) == 1


def test_many_unreadable_files_give_one_warning(tmp_path, caplog):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "a.dcm")
    for k in range(200):
        (src / f"junk{k:03d}.dcm").write_bytes(b"junk" * 10)
    with caplog.at_level(logging.WARNING, logger="medimg"):
        report = deidentify(src, tmp_path / "out")
    assert report.n_skipped == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "200 file(s)" in warnings[0]


def test_deidentify_metadata_follows_the_profile():
    from medimg.io.deid import deidentify_metadata

    meta = {"modality": "MR", "series_uid": "1.2.3", "study_uid": "1.2.4", "frame_of_reference_uid": "1.2.5",
            "series_description": "Smith brain", "source_path": "/data/Smith", "manufacturer": "ACME",
            "description": "Smith", "keep_identifiers": True, "window": [40, 400]}
    assert deidentify_metadata(meta) == {"modality": "MR", "manufacturer": "ACME", "window": [40, 400]}


def _with_bytes_after_meta(path: Path, extra: bytes) -> Path:
    """CT_small with raw bytes inserted right after the file meta group (where group 0000 would sit)."""
    import struct

    shutil.copy(get_testdata_file("CT_small.dcm"), path)  # Implicit VR Little Endian
    data = path.read_bytes()
    meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]  # (0002,0000) UL group length
    path.write_bytes(data[:meta_end] + extra + data[meta_end:])
    return path


def test_command_set_elements_are_removed(tmp_path):
    import struct

    command_field = struct.pack("<HHIH", 0x0000, 0x0100, 2, 1)  # (0000,0100) Command Field, implicit VR
    src = _with_bytes_after_meta(tmp_path / "cmd.dcm", command_field)
    assert 0x00000100 in pydicom.dcmread(src)
    deidentify(src, tmp_path / "out.dcm")  # pydicom refused to write it back: ValueError before
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert not [e for e in out if e.tag.group == 0] and out.PatientIdentityRemoved == "YES"


def test_unknown_vr_in_the_file_meta_is_one_error(tmp_path):
    src = tmp_path / "meta.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), src)
    data = src.read_bytes()
    i = data.index(b"\x02\x00\x03\x00UI")  # (0002,0003) Media Storage SOP Instance UID
    src.write_bytes(data[:i + 4] + b"ZZ" + data[i + 6:])
    with pytest.raises(ImageReadError, match="not a readable DICOM file"):
        deidentify(src, tmp_path / "out.dcm")
    assert not (tmp_path / "out.dcm").exists()
