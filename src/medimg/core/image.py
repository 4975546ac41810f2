"""The one data object of medimg: :class:`Image` (voxels + geometry + kind + metadata + history).

An Image is immutable: operations return a new Image and never change their input. Voxels are channels first,
``(C, Z, Y, X)``; a 2D image has ``Z == 1``. Training loops work on plain arrays/tensors taken from
``image.voxels``; geometry travels beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from medimg.core.enums import Kind
from medimg.core.errors import GeometryMismatchError, InvalidParameterError
from medimg.core.geometry import Geometry

__all__ = ["Image", "Operation", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """JSON-friendly copy of a value: numpy scalars/arrays -> numbers/lists, tuples -> lists, dataclasses ->
    dicts, enums -> their values, anything else unknown -> its string (for history, plans and reports)."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "value") and isinstance(value.value, (str, int)):
        return value.value
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class Operation:
    """One entry of an image's history: the operation's name and its parameters (JSON-friendly)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(to_jsonable(dict(self.params))))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


def _freeze(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False)
class Image:
    """A 2D or 3D, single- or multi-channel medical image or label map.

    Args:
        voxels: array of shape (C, Z, Y, X). Stored as a read-only view.
        geometry: spacing/origin/direction/space of the grid (see :class:`Geometry`).
        kind: intensity, label or probability: decides interpolation and valid operations.
        metadata: read-only mapping (modality, series_uid, window, rescale, acquisition fields).
        history: operations applied so far, oldest first.

    Example:
        >>> img = Image.from_array(np.zeros((4, 5, 6), np.int16), spacing=(0.5, 0.5, 2.0))
        >>> img.shape, img.spatial_shape, img.is_2d
        ((1, 4, 5, 6), (4, 5, 6), False)
    """

    voxels: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)
    kind: Kind = Kind.INTENSITY
    metadata: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Operation, ...] = ()

    def __post_init__(self) -> None:
        vox = np.asarray(self.voxels)
        if vox.ndim != 4:
            raise InvalidParameterError(
                "voxels have the wrong number of dimensions", parameter="voxels",
                expected="4 axes (C, Z, Y, X)", found=f"{vox.ndim} axes, shape {vox.shape}",
                fix="use Image.from_array, which accepts (Y, X), (Z, Y, X) or (C, Z, Y, X)",
            )
        if min(vox.shape) < 1:
            raise InvalidParameterError(
                "empty voxel array", parameter="voxels", expected="every axis >= 1", found=vox.shape,
                fix="check the input is not empty",
            )
        if vox.dtype == object or not (np.issubdtype(vox.dtype, np.number) or vox.dtype == bool):
            raise InvalidParameterError(
                "unsupported voxel type", parameter="voxels", expected="a numeric dtype", found=str(vox.dtype),
                fix="convert the array to a numeric dtype",
            )
        if not isinstance(self.geometry, Geometry):
            raise InvalidParameterError(
                "geometry is not a Geometry", parameter="geometry", expected="medimg.core.Geometry",
                found=type(self.geometry).__name__, fix="build one with Geometry(spacing=..., origin=..., ...)",
            )
        object.__setattr__(self, "voxels", _freeze(vox))
        object.__setattr__(self, "kind", Kind(self.kind))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "history", tuple(self.history))

    # ---- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_array(
        cls,
        array: np.ndarray | Sequence[Any],
        *,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] | None = None,
        direction: Sequence[Sequence[float]] | np.ndarray | None = None,
        kind: Kind | str = Kind.INTENSITY,
        metadata: Mapping[str, Any] | None = None,
        channel_axis: int | None = None,
        copy: bool = True,
    ) -> Image:
        """Build an Image from a plain array.

        Args:
            array: (Y, X), (Z, Y, X) or (C, Z, Y, X); with ``channel_axis`` set, that axis holds channels and
                the remaining 2 or 3 axes are spatial.
            spacing: (sx, sy[, sz]) in mm, x first; a 2-value spacing gets sz = 1.
            origin, direction: see :class:`Geometry`; identity/zero by default.
            kind, metadata: see :class:`Image`.
            channel_axis: axis of ``array`` holding channels (e.g. -1 for RGB images), or None.
            copy: copy the array (default) so later changes to it cannot reach the image.
        """
        arr = np.array(array, copy=True) if copy else np.asarray(array)
        if channel_axis is not None:
            if not -arr.ndim <= channel_axis < arr.ndim:
                raise InvalidParameterError(
                    "channel axis out of range", parameter="channel_axis",
                    expected=f"an axis in [-{arr.ndim}, {arr.ndim - 1}]", found=channel_axis,
                    fix="give the axis that holds the channels",
                )
            arr = np.moveaxis(arr, channel_axis, 0)
            spatial = arr.ndim - 1
            if spatial == 2:
                arr = arr[:, None]
            elif spatial != 3:
                raise InvalidParameterError(
                    "wrong number of spatial dimensions", parameter="array", expected="2 or 3 spatial axes",
                    found=f"{spatial} spatial axes (shape {np.shape(array)})", fix="pass a 2D or 3D array",
                )
        elif arr.ndim == 2:
            arr = arr[None, None]
        elif arr.ndim == 3:
            arr = arr[None]
        elif arr.ndim != 4:
            raise InvalidParameterError(
                "wrong number of dimensions", parameter="array", expected="(Y, X), (Z, Y, X) or (C, Z, Y, X)",
                found=f"shape {arr.shape}", fix="reshape the array or set channel_axis",
            )
        if spacing is not None and len(spacing) == 2:
            spacing = (float(spacing[0]), float(spacing[1]), 1.0)
        geometry = Geometry(
            spacing=tuple(spacing) if spacing is not None else (1.0, 1.0, 1.0),
            origin=tuple(origin) if origin is not None else (0.0, 0.0, 0.0),
            direction=direction if direction is not None else np.eye(3),
        )
        return cls(voxels=arr, geometry=geometry, kind=Kind(kind), metadata=dict(metadata or {}))

    # ---- shape helpers -------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(C, Z, Y, X)."""
        return tuple(self.voxels.shape)  # type: ignore[return-value]

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """(Z, Y, X)."""
        return tuple(self.voxels.shape[1:])  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        return int(self.voxels.shape[0])

    @property
    def is_2d(self) -> bool:
        """True when the image has a single slice (Z == 1)."""
        return self.voxels.shape[1] == 1

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Shortcut for ``geometry.spacing`` (sx, sy, sz) in mm."""
        return self.geometry.spacing

    @property
    def dtype(self) -> np.dtype:
        return self.voxels.dtype

    @property
    def array(self) -> np.ndarray:
        """Voxels as (Z, Y, X) for a single-channel image (read-only view); raises for multi-channel images."""
        if self.n_channels != 1:
            raise InvalidParameterError(
                "image has several channels", parameter="image", expected="1 channel",
                found=f"{self.n_channels} channels", fix="use image.voxels[c] to pick a channel",
            )
        return self.voxels[0]

    @property
    def voxel_volume_mm3(self) -> float:
        sx, sy, sz = self.geometry.spacing
        return sx * sy * sz

    # ---- derivation ----------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> Image:
        """A new Image with some fields replaced (history unchanged unless given)."""
        values = {
            "voxels": self.voxels, "geometry": self.geometry, "kind": self.kind,
            "metadata": self.metadata, "history": self.history,
        }
        values.update(changes)
        return Image(**values)

    def derive(
        self,
        voxels: np.ndarray,
        *,
        operation: str,
        params: Mapping[str, Any] | None = None,
        geometry: Geometry | None = None,
        kind: Kind | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Image:
        """A new Image produced by an operation: new voxels, the operation recorded in the history."""
        return Image(
            voxels=voxels,
            geometry=self.geometry if geometry is None else geometry,
            kind=self.kind if kind is None else kind,
            metadata=self.metadata if metadata is None else metadata,
            history=self.history + (Operation(operation, params or {}),),
        )

    def with_metadata(self, **updates: Any) -> Image:
        """A new Image whose metadata has some entries added or replaced."""
        meta = dict(self.metadata)
        meta.update(updates)
        return self.replace(metadata=meta)

    # ---- comparison ----------------------------------------------------------------------------------------
    def check_same_grid(self, other: Image, *, what: str = "images", atol_mm: float = 1e-3) -> None:
        """Raise :class:`GeometryMismatchError` when ``other`` does not lie on the same voxel grid."""
        if self.spatial_shape != other.spatial_shape:
            raise GeometryMismatchError(
                f"{what} do not share a voxel grid (size differs)",
                expected=f"size (Z, Y, X) {self.spatial_shape}", found=f"{other.spatial_shape}",
                fix="resample one image onto the other's grid (medimg.preprocess.resample_to)",
            )
        self.geometry.check_same(other.geometry, what=what, atol_mm=atol_mm)

    # ---- description ---------------------------------------------------------------------------------------
    def history_json(self) -> str:
        return json.dumps([op.to_dict() for op in self.history])

    def __repr__(self) -> str:
        g = self.geometry
        return (
            f"Image(shape={self.shape}, dtype={self.voxels.dtype}, kind={self.kind.value}, "
            f"spacing={tuple(round(s, 4) for s in g.spacing)}, orientation={g.orientation}, "
            f"space={g.space.value}, history={[op.name for op in self.history]})"
        )
