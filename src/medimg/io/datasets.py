"""Folder datasets in the nnU-Net layout (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

Two ``dataset.json`` flavours are understood:

* **nnU-Net v2**: ``channel_names`` (or ``modality``), ``labels``, ``file_ending``; cases are found by listing
  ``imagesTr/<case>_0000<file_ending>``; an optional ``dataset`` mapping ``{case: {"images": [...],
  "label": ...}}`` gives explicit paths instead.
* **nnU-Net v1 / Medical Segmentation Decathlon**: ``modality`` and a ``training`` list of
  ``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}``; the image entry is either one
  (possibly 4D) file, or, after nnU-Net's conversion, ``x_0000.nii.gz`` ... one file per channel.

Each case loads as ``(image, label)``: all channels stacked into one multi-channel :class:`Image` and the label
map as ``kind=label``, checked to lie on the image grid.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medimg.core.enums import Kind
from medimg.core.errors import (
    GeometryMismatchError,
    ImageReadError,
    InvalidParameterError,
    UnsupportedFormatError,
)
from medimg.core.image import Image
from medimg.io.files import check_input, compound_suffix, is_inside

logger = logging.getLogger(__name__)

__all__ = ["NnUNetDataset", "read_case_file"]

_READERS = {
    ".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "itk", ".nhdr": "itk", ".mha": "itk", ".mhd": "itk",
    ".png": "raster", ".tif": "raster", ".tiff": "raster", ".jpg": "raster", ".jpeg": "raster", ".npz": "npz",
}


def read_case_file(path: str | os.PathLike[str], *, kind: Kind | str | None = None) -> Image:
    """Read one image file of a dataset with the reader its extension names.

    Raises:
        UnsupportedFormatError: an extension without a reader here.
        ImageReadError: the reader's errors.
    """
    p = Path(path)
    reader = _READERS.get(compound_suffix(p))
    if reader == "nifti":
        from medimg.io.nifti import read_nifti

        return read_nifti(p, kind=kind)
    if reader == "itk":
        from medimg.io.itk_formats import read_itk

        return read_itk(p, kind=kind)
    if reader == "raster":
        from medimg.io.raster import read_raster

        return read_raster(p, kind=kind)
    if reader == "npz":
        from medimg.io.npz import read_npz

        return read_npz(p, kind=kind)
    raise UnsupportedFormatError(
        "no reader for this dataset file", path=p, expected="one of " + ", ".join(_READERS),
        found=f"extension '{compound_suffix(p) or 'none'}'", fix="convert the dataset files to NIfTI (.nii.gz)",
    )


class NnUNetDataset:
    """An nnU-Net-style dataset folder: lists the training cases and loads (image, label) pairs.

    Args:
        root: the folder holding ``dataset.json``, ``imagesTr/`` and ``labelsTr/``.

    Attributes:
        root: the folder (Path).
        name: the dataset name from dataset.json ("" if absent).
        channel_names: channel index -> name, e.g. {0: "MRI"}.
        labels: label name -> value, e.g. {"background": 0, "anterior": 1}.
        file_ending: file extension of the case files, e.g. ".nii.gz".
        cases: sorted case ids.

    Raises:
        ImageReadError: missing or unreadable dataset.json, no imagesTr folder, no cases found.

    Example:
        >>> ds = NnUNetDataset("../shared/data/hippocampus")  # doctest: +SKIP
        >>> image, label = ds.load(ds.cases[0])                # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = check_input(root)
        if not self.root.is_dir():
            raise ImageReadError(
                "not a dataset folder", path=self.root, expected="a folder with dataset.json",
                found="a file", fix="give the dataset's root folder",
            )
        json_path = self.root / "dataset.json"
        if not json_path.is_file():
            raise ImageReadError(
                "dataset.json is missing", path=json_path, expected="an nnU-Net dataset.json",
                found="no such file", fix="give the dataset root folder (the one holding dataset.json, "
                "imagesTr/ and labelsTr/), or write a dataset.json describing channels and labels",
            )
        try:
            info = json.loads(json_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ImageReadError(
                "unreadable dataset.json", path=json_path, expected="valid JSON", found=str(exc),
                fix="repair the JSON (e.g. check it with python -m json.tool)",
            ) from exc
        if not isinstance(info, dict):
            raise ImageReadError("dataset.json is not a JSON object", path=json_path, expected="an object",
                                 found=type(info).__name__, fix="follow the nnU-Net dataset.json format")
        self.info: dict[str, Any] = info
        self.name = str(info.get("name", ""))
        channels = info.get("channel_names", info.get("modality", {"0": "image"}))
        try:
            self.channel_names = {int(k): str(v) for k, v in dict(channels).items()}
        except (TypeError, ValueError) as exc:
            raise ImageReadError(
                "invalid channel names in dataset.json", path=json_path,
                expected='a mapping like {"0": "CT"}', found=repr(channels)[:80],
                fix="fix 'channel_names' (v2) or 'modality' (v1)",
            ) from exc
        if sorted(self.channel_names) != list(range(len(self.channel_names))):
            raise ImageReadError(
                "channel numbers are not 0..N-1", path=json_path, expected="keys 0, 1, ...",
                found=sorted(self.channel_names), fix="number the channels from 0 without gaps",
            )
        self.labels = self._parse_labels(info.get("labels", {}))
        self.file_ending = str(info.get("file_ending", ".nii.gz"))
        self._entries = self._find_cases(json_path)
        self._check_inside(json_path)
        self.cases: list[str] = sorted(self._entries)
        if not self.cases:
            raise ImageReadError(
                "dataset has no training cases", path=self.root,
                expected=f"imagesTr/<case>_0000{self.file_ending} files", found="none",
                fix="check the folder layout and file_ending in dataset.json",
            )
        n_declared = info.get("numTraining")
        if isinstance(n_declared, int) and n_declared != len(self.cases):
            logger.warning("%s: dataset.json says numTraining=%d but %d cases were found",
                           self.root, n_declared, len(self.cases))
        logger.debug("dataset %s: %d cases, %d channels", self.root, len(self.cases), len(self.channel_names))

    # ---- discovery -----------------------------------------------------------------------------------------
    @staticmethod
    def _parse_labels(labels: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        if not isinstance(labels, dict):
            return out
        for k, v in labels.items():
            try:  # v2: name -> value (value may be a list for regions); v1: "value" -> name
                if isinstance(v, int):
                    out[str(k)] = v
                elif str(k).lstrip("-").isdigit():
                    out[str(v)] = int(k)
            except (TypeError, ValueError):
                continue
        return out

    def _resolve(self, entry: str) -> Path:
        return (self.root / entry).resolve() if not Path(entry).is_absolute() else Path(entry)

    def _check_inside(self, json_path: Path) -> None:
        """Refuse case files that lie, or link, outside the dataset folder (dataset.json entries such as
        ``../../evil`` or ``/etc/x``, and links in imagesTr/labelsTr): a dataset reads only its own files."""
        outside = [f for images, label in self._entries.values() for f in [*images, label]
                   if str(f) and not is_inside(f, self.root)]
        if outside:
            raise ImageReadError(
                "dataset names files outside its folder", path=json_path,
                expected=f"every image and label file inside '{self.root}'",
                found=f"{len(outside)} file(s) outside it (links followed), e.g. '{outside[0]}'",
                fix="copy the files into the dataset folder (imagesTr/, labelsTr/) and give paths relative to "
                    "dataset.json",
            )

    def _find_cases(self, json_path: Path) -> dict[str, tuple[list[Path], Path]]:
        """case id -> (channel files, label file). Files may be missing; load() reports that."""
        n = len(self.channel_names)
        entries: dict[str, tuple[list[Path], Path]] = {}
        explicit = self.info.get("dataset")
        if isinstance(explicit, dict):  # v2 with explicit paths
            for case, item in explicit.items():
                images = [self._resolve(str(x)) for x in item.get("images", [])]
                entries[str(case)] = (images, self._resolve(str(item.get("label", ""))))
            return entries
        training = self.info.get("training")
        if isinstance(training, list) and training:  # v1 / MSD
            for item in training:
                if not isinstance(item, dict) or "image" not in item:
                    continue
                image = self._resolve(str(item["image"]))
                label = self._resolve(str(item.get("label", "")))
                ending = compound_suffix(image)
                case = image.name[: len(image.name) - len(ending)] if ending else image.name
                if image.is_file() or n == 1 and not (image.parent / f"{case}_0000{ending}").exists():
                    files = [image]  # one file, possibly 4D with all channels
                else:
                    files = [image.parent / f"{case}_{c:04d}{ending}" for c in range(n)]
                entries[case] = (files, label)
            return entries
        images_dir = self.root / "imagesTr"
        if not images_dir.is_dir():
            raise ImageReadError(
                "imagesTr folder is missing", path=images_dir, expected="imagesTr/ beside dataset.json",
                found="no such folder", fix="put the training images in imagesTr/<case>_0000" + self.file_ending,
            )
        suffix = "_0000" + self.file_ending
        for f in images_dir.iterdir():
            if f.name.endswith(suffix) and not f.name.startswith("."):
                case = f.name[: -len(suffix)]
                files = [images_dir / f"{case}_{c:04d}{self.file_ending}" for c in range(n)]
                entries[case] = (files, self.root / "labelsTr" / f"{case}{self.file_ending}")
        return entries

    # ---- access --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cases)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._entries

    def __repr__(self) -> str:
        return (f"NnUNetDataset(root='{self.root}', cases={len(self.cases)}, "
                f"channels={list(self.channel_names.values())}, labels={self.labels})")

    def files(self, case_id: str) -> tuple[list[Path], Path]:
        """The channel files and the label file of a case (whether or not they exist)."""
        if case_id not in self._entries:
            shown = ", ".join(self.cases[:5]) + (", ..." if len(self.cases) > 5 else "")
            raise InvalidParameterError(
                "unknown case id", parameter="case_id", expected=f"one of {len(self.cases)} cases ({shown})",
                found=repr(case_id), fix="take ids from dataset.cases",
            )
        images, label = self._entries[case_id]
        return list(images), label

    def load_image(self, case_id: str) -> Image:
        """All channels of a case stacked into one Image (C, Z, Y, X), in channel order."""
        paths, _ = self.files(case_id)
        channels: list[Image] = []
        for c, path in enumerate(paths):
            if not path.is_file():
                raise ImageReadError(
                    "channel file is missing", path=path,
                    expected=f"channel {c} ({self.channel_names.get(c, '?')}) of case '{case_id}'",
                    found="no such file", fix=f"add the file, or fix the channel list in {self.root / 'dataset.json'}",
                )
            img = read_case_file(path)
            if channels:
                try:
                    channels[0].check_same_grid(img, what=f"channels 0 and {c} of case '{case_id}'")
                except GeometryMismatchError as exc:
                    raise GeometryMismatchError(exc.what, path=path, expected=exc.expected, found=exc.found,
                                                fix=exc.fix) from exc
            channels.append(img)
        first = channels[0]
        if len(channels) == 1:
            voxels = first.voxels
        else:
            dtype = np.result_type(*[ch.dtype for ch in channels])
            voxels = np.concatenate([np.asarray(ch.voxels, dtype=dtype) for ch in channels], axis=0)
        n_vox = voxels.shape[0]
        if len(self.channel_names) != n_vox:
            logger.warning("%s: case '%s' has %d channels, dataset.json names %d", self.root, case_id, n_vox,
                           len(self.channel_names))
        metadata = dict(first.metadata)
        metadata.update({
            "case_id": case_id,
            "channel_names": [self.channel_names.get(c, str(c)) for c in range(n_vox)],
            "source_path": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
        })
        return Image(voxels=voxels, geometry=first.geometry, kind=Kind.INTENSITY, metadata=metadata)

    def load_label(self, case_id: str) -> Image:
        """The label map of a case (kind=label)."""
        _, path = self.files(case_id)
        if not path.is_file():
            raise ImageReadError(
                "label file is missing", path=path, expected=f"the label map of case '{case_id}'",
                found="no such file", fix="add the label file to labelsTr/, or remove the case from imagesTr/",
            )
        label = read_case_file(path, kind=Kind.LABEL)
        return label.with_metadata(case_id=case_id, labels=dict(self.labels))

    def load(self, case_id: str) -> tuple[Image, Image]:
        """``(image, label)`` of a case; the label is checked to lie on the image grid.

        Raises:
            InvalidParameterError: unknown case id.
            ImageReadError: a missing or unreadable channel or label file (named in the message).
            GeometryMismatchError: channels or label on different grids (the label file is named).
        """
        image = self.load_image(case_id)
        label = self.load_label(case_id)
        try:
            image.check_same_grid(label, what=f"image and label of case '{case_id}'")
        except GeometryMismatchError as exc:
            _, path = self.files(case_id)
            raise GeometryMismatchError(exc.what, path=path, expected=exc.expected, found=exc.found,
                                        fix=exc.fix) from exc
        return image, label
