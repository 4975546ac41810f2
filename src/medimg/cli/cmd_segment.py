"""`medimg segment IN OUT --method ...`: classical segmentation from the command line.

Methods: otsu, multi-otsu, threshold, region-grow, fcm, graph-cut, watershed, level-set, slic, atlas.
Seeds are voxel indices ``--seed Z,Y,X`` (``Y,X`` for 2D images) or LPS world coordinates in mm
``--seed-world=X,Y,Z`` (write the ``=`` when the first value is negative); both may be repeated.
Atlas-based segmentation registers each ``--atlas IMG`` (with its ``--atlas-labels LAB``; repeat both for
multi-atlas) onto IN and fuses the warped labels by ``--voting majority`` or locally ``weighted`` voting.
Optional clean-up (``--fill-holes``, ``--largest``, ``--open MM``, ``--close MM``) applies to binary results.
OUT is a label map (NIfTI for 3D, PNG or NIfTI for 2D).
"""

from __future__ import annotations

import argparse

METHODS = ("otsu", "multi-otsu", "threshold", "region-grow", "fcm", "graph-cut", "watershed", "level-set", "slic",
           "atlas")
#: registration models offered for --method atlas (CLI spelling)
ATLAS_REGISTRATIONS = ("rigid", "affine", "bspline", "demons", "diffeomorphic-demons")


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    from medimg.cli._args import add_read_options
    from medimg.cli._spacing import add_pixel_spacing_option

    p = subparsers.add_parser(
        "segment", parents=parents, help=help, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="image file or DICOM file/folder/zip")
    from medimg.cli._output import add_output_argument

    add_output_argument(p, help="output label map (.nii.gz, .nrrd, .mha, or .png for 2D)")
    p.add_argument("--method", required=True, choices=METHODS)
    g = p.add_argument_group("thresholds")
    g.add_argument("--lower", type=float, help="threshold / region-grow: lowest value kept (HU for CT)")
    g.add_argument("--upper", type=float, help="threshold / region-grow: highest value kept")
    g.add_argument("--classes", type=int, default=3, help="multi-otsu classes / fcm clusters")
    s = p.add_argument_group("seeds (region-grow: --seed; graph-cut: --seed for foreground and --background)")
    s.add_argument("--seed", action="append", default=[], metavar="Z,Y,X", help="voxel index (Y,X in 2D)")
    s.add_argument("--seed-world", action="append", default=[], metavar="X,Y,Z",
                   help="LPS point in mm (write --seed-world=-12.5,30,4 when it starts with a minus)")
    s.add_argument("--background", action="append", default=[], metavar="Z,Y,X", help="graph-cut background seed")
    s.add_argument("--background-world", action="append", default=[], metavar="X,Y,Z",
                   help="graph-cut background seed as an LPS point in mm")
    m = p.add_argument_group("method options")
    m.add_argument("--multiplier", type=float, default=2.5, help="region-grow (confidence connected): the band "
                   "is mean +- multiplier x std of the region")
    m.add_argument("--iterations", type=int, default=None, help="region-grow / level-set iterations")
    m.add_argument("--spatial-weight", type=float, default=0.0, help="fcm: weight of the neighbourhood term")
    m.add_argument("--lambda", dest="lambda_boundary", type=float, default=2.0, help="graph-cut boundary weight")
    m.add_argument("--min-distance-mm", type=float, default=2.0, help="watershed: least distance between markers")
    m.add_argument("--level-set", choices=("chan-vese", "geodesic"), default="chan-vese")
    m.add_argument("--n-segments", type=int, default=200, help="slic: approximate number of superpixels")
    m.add_argument("--compactness", type=float, default=0.1, help="slic compactness")
    a = p.add_argument_group("atlas (--method atlas; repeat --atlas and --atlas-labels for multi-atlas)")
    a.add_argument("--atlas", action="append", default=[], metavar="IMG", help="atlas image (same modality as IN)")
    a.add_argument("--atlas-labels", action="append", default=[], metavar="LAB",
                   help="label map on the grid of the --atlas at the same position")
    a.add_argument("--voting", choices=("majority", "weighted"), default="majority",
                   help="label fusion: majority, or weighted by local intensity similarity to IN")
    a.add_argument("--registration", choices=ATLAS_REGISTRATIONS, default="affine",
                   help="registration of each atlas onto IN (deformable ones start from an affine alignment)")
    c = p.add_argument_group("clean-up of binary results")
    c.add_argument("--fill-holes", action="store_true")
    c.add_argument("--largest", action="store_true", help="keep the largest connected component")
    c.add_argument("--open", dest="open_mm", type=float, metavar="MM", help="morphological opening radius in mm")
    c.add_argument("--close", dest="close_mm", type=float, metavar="MM", help="morphological closing radius in mm")
    add_pixel_spacing_option(p)
    add_read_options(p)


def _points(values: list[str], option: str):
    import numpy as np

    from medimg.core.errors import InvalidParameterError

    pts = []
    for v in values:
        try:
            pts.append([float(t) for t in v.split(",")])
        except ValueError as exc:
            raise InvalidParameterError("not a point", parameter=option, expected="comma-separated numbers",
                                        found=repr(v), fix=f"write {option} 10,20,30") from exc
    if len({len(p) for p in pts}) > 1:
        raise InvalidParameterError("points of different lengths", parameter=option, expected="all 2 or all 3",
                                    found=values, fix="give every point with the same number of values")
    return np.array(pts) if pts else None


def _seeds(voxel: list[str], world: list[str], name: str, *, required: bool):
    from medimg.core.errors import InvalidParameterError

    v = _points(voxel, f"--{name}")
    w = _points(world, f"--{name}-world")
    if v is not None and w is not None:
        raise InvalidParameterError("seeds given both as voxels and world points", parameter=f"--{name}",
                                    fix=f"use either --{name} or --{name}-world")
    if v is None and w is None:
        if required:
            raise InvalidParameterError("no seeds", parameter=f"--{name}", expected="at least one seed",
                                        found="none", fix=f"add --{name} Z,Y,X or --{name}-world X,Y,Z")
        return None, "voxel"
    return (v, "voxel") if v is not None else (w, "world")


def _check_atlas_options(args) -> None:
    """--atlas/--atlas-labels only with --method atlas, at least one, as many of each, files present."""
    from medimg.core.errors import InvalidParameterError
    from medimg.io.files import check_input

    if args.method != "atlas":
        if args.atlas or args.atlas_labels:
            raise InvalidParameterError("--atlas/--atlas-labels are only for --method atlas", parameter="--atlas",
                                        expected="--method atlas", found=f"--method {args.method}",
                                        fix="add --method atlas or drop the atlas options")
        return
    if not args.atlas:
        raise InvalidParameterError("--method atlas needs an atlas", parameter="--atlas",
                                    expected="--atlas IMG --atlas-labels LAB (repeat for multi-atlas)",
                                    found="no --atlas", fix="add --atlas IMG --atlas-labels LAB")
    if len(args.atlas) != len(args.atlas_labels):
        raise InvalidParameterError("every --atlas needs its --atlas-labels", parameter="--atlas-labels",
                                    expected=f"{len(args.atlas)} --atlas-labels (one per --atlas, same order)",
                                    found=f"{len(args.atlas_labels)}",
                                    fix="give --atlas IMG --atlas-labels LAB once per atlas")
    for path in args.atlas + args.atlas_labels:
        check_input(path, allow_dir=True)


def _atlas(image, args):
    """--method atlas: read the atlases (labels checked against their own atlas grid) and fuse them."""
    from medimg.classical.atlas import atlas_segment
    from medimg.classical.registration_checks import check_on_grid, check_same_dim
    from medimg.core.errors import InvalidParameterError
    from medimg.io import read

    atlases = []
    for i, (img_path, lab_path) in enumerate(zip(args.atlas, args.atlas_labels), 1):
        atlas, labels = read(img_path), read(lab_path, kind="label")
        try:
            check_same_dim(image, atlas, "IN", "--atlas")
        except InvalidParameterError as exc:
            raise InvalidParameterError(exc.what, path=img_path, parameter="--atlas", expected=exc.expected,
                                        found=exc.found, fix="give atlases of the same dimension (2D/3D) as IN"
                                        ) from exc
        try:
            check_on_grid(atlas, labels, f"atlas {i}", "--atlas-labels")
        except InvalidParameterError as exc:
            raise InvalidParameterError(exc.what, path=lab_path, parameter="--atlas-labels",
                                        expected=f"the grid of --atlas {img_path}", found=exc.found,
                                        fix=f"give the label map of that atlas (--atlas-labels follow the --atlas "
                                        f"order), or {exc.fix}") from exc
        atlases.append((atlas, labels))
    return atlas_segment(image, atlases, method=args.registration.replace("-", "_"), voting=args.voting)


def _segment(image, args):
    from medimg import classical as cl
    from medimg.core.errors import InvalidParameterError

    method = args.method
    if method == "atlas":
        return _atlas(image, args).labels
    if method == "otsu":
        return cl.otsu(image)
    if method == "multi-otsu":
        return cl.multi_otsu(image, classes=args.classes)
    if method == "threshold":
        if args.lower is None and args.upper is None:
            raise InvalidParameterError("no bounds", parameter="--lower/--upper", expected="at least one bound",
                                        fix="add --lower VALUE and/or --upper VALUE")
        return cl.threshold(image, lower=args.lower, upper=args.upper)
    if method == "region-grow":
        seeds, space = _seeds(args.seed, args.seed_world, "seed", required=True)
        if args.lower is not None or args.upper is not None:
            if args.lower is None or args.upper is None:
                raise InvalidParameterError("connected threshold needs both bounds", parameter="--lower/--upper",
                                            fix="give both --lower and --upper, or neither (confidence connected)")
            return cl.connected_threshold(image, seeds=seeds, lower=args.lower, upper=args.upper, seed_space=space)
        return cl.confidence_connected(image, seeds=seeds, multiplier=args.multiplier,
                                       iterations=args.iterations or 4, seed_space=space)
    if method == "fcm":
        return cl.fuzzy_c_means(image, n_clusters=args.classes, spatial_weight=args.spatial_weight).labels
    if method == "graph-cut":
        fg, space = _seeds(args.seed, args.seed_world, "seed", required=True)
        bg, bspace = _seeds(args.background, args.background_world, "background", required=True)
        if space != bspace:
            raise InvalidParameterError("foreground and background seeds in different spaces",
                                        parameter="--background", fix="give both as voxels or both as world points")
        return cl.graph_cut(image, foreground_seeds=fg, background_seeds=bg, seed_space=space,
                            lambda_boundary=args.lambda_boundary)
    if method == "watershed":
        return cl.watershed_instances(cl.fill_holes(cl.otsu(image)), min_distance_mm=args.min_distance_mm)
    if method == "level-set":
        if args.level_set == "chan-vese":
            return cl.chan_vese(image, iterations=args.iterations or 100)
        return cl.geodesic_active_contour(image, init=cl.otsu(image), iterations=args.iterations or 100)
    return cl.slic(image, n_segments=args.n_segments, compactness=args.compactness)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from medimg import classical as cl
    from medimg.cli._args import load_input
    from medimg.cli._output import resolve_output
    from medimg.io import write

    resolve_output(args)
    notes: list[str] = []
    args.modality = None
    _check_atlas_options(args)
    image = load_input(args, notes)
    labels = _segment(image, args)
    binary = labels.voxels.max() <= 1
    if args.fill_holes or args.largest or args.open_mm or args.close_mm:
        if not binary:
            from medimg.core.errors import InvalidParameterError

            raise InvalidParameterError("clean-up options need a binary result", parameter="--method",
                                        expected="a method giving 0/1 (otsu, threshold, region-grow, graph-cut, "
                                        "level-set)", found=args.method, fix="drop the clean-up options")
        if args.open_mm:
            labels = cl.binary_opening(labels, radius_mm=args.open_mm)
        if args.close_mm:
            labels = cl.binary_closing(labels, radius_mm=args.close_mm)
        if args.fill_holes:
            labels = cl.fill_holes(labels)
        if args.largest and labels.voxels.any():
            labels = cl.largest_component(labels)
    top = int(labels.voxels.max())
    labels = labels.replace(voxels=labels.voxels.astype(np.uint8 if top < 256 else np.uint16 if top < 65536
                                                         else np.uint32))
    out = write(labels, args.output, inputs=[args.input, *args.atlas, *args.atlas_labels])
    from medimg.cli._spacing import warn_fallback
    from medimg.measure.table import spacing_unknown

    warn_fallback(notes, quiet=args.quiet)
    if not args.quiet:
        for note in notes:
            if not note.startswith("no pixel spacing in "):  # on stderr already
                print(f"note: {note}")
        counts = np.bincount(labels.voxels.ravel().astype(np.int64))
        fg = int(counts[1:].sum())
        if not labels.is_2d:
            size = f"{fg * labels.voxel_volume_mm3 / 1000:.4g} mL"
        elif spacing_unknown(image):  # a 2D image has no volume; without a pixel size, pixels
            size = f"{fg} px2"
        else:
            size = f"{fg * labels.spacing[0] * labels.spacing[1]:.4g} mm2"
        print(f"wrote {out}: method {args.method}, {len(np.flatnonzero(counts[1:]))} label value(s), "
              f"{fg} foreground voxels ({size})")
    return 0
