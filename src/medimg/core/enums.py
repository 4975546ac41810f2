"""Small enumerations shared by the whole library."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Space", "Kind", "Modality"]


class Space(StrEnum):
    """Patient coordinate system of physical coordinates. The library works in LPS (DICOM, ITK)."""

    LPS = "LPS"
    RAS = "RAS"


class Kind(StrEnum):
    """What the voxel values mean; decides interpolation and which operations make sense."""

    INTENSITY = "intensity"
    LABEL = "label"
    PROBABILITY = "probability"


class Modality(StrEnum):
    """Acquisition modality (DICOM Modality codes where they exist)."""

    CT = "CT"
    MR = "MR"
    PT = "PT"
    US = "US"
    CR = "CR"
    DX = "DX"
    MG = "MG"
    XA = "XA"
    NM = "NM"
    SEG = "SEG"
    OT = "OT"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: object) -> Modality:
        """Map a tag value or string to a Modality, UNKNOWN when unrecognised."""
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            return cls.UNKNOWN
