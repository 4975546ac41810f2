"""`medimg demo`: the main job on the CT series shipped inside the package.

Reads the 20-slice JPEG 2000 CT series (TotalSegmentator sample, CC BY 4.0), prints what it found, and writes
into an output folder: the volume as NIfTI, a soft-tissue-windowed copy resampled to 1.5 mm, a PNG montage in
the lung and bone windows, a JSON summary, and the full ``medimg analyze`` output (CT body/lung/gas/bone
segmentation, volumes in mL, HTML report) in ``analysis/``; the shipped hippocampus model on the shipped MRI
crop in ``analysis_hippocampus/``. The folder is built beside the target and moved
into place only when everything succeeded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SUMMARY_NAME = "summary.json"
_MARKER = "medimg_demo"


def add_parser(subparsers, *, parents, help: str) -> None:  # noqa: A002
    p = subparsers.add_parser(
        "demo", parents=parents, help=help,
        description="Run the main job on the CT sample shipped with medimg and write the results to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-o", "--out", default="demo_output", help="output folder (created; a previous demo folder is "
                   "replaced, any other non-empty folder is refused)")
    p.add_argument("--input", default=None, help="use this DICOM series instead of the shipped sample")
    # not a voxel/pixel size of the input (that is --pixel-spacing elsewhere): the grid the demo resamples to
    p.add_argument("--spacing", default="1.5,1.5,1.5", help="resampling target spacing in mm (x,y,z) of the "
                   "demo's resampling step (not the input's pixel size)")


def _syntax_name(uid: str | None) -> str:
    from pydicom.uid import UID

    return UID(uid).name if uid else "?"


def hippocampus_sample_path() -> Path:
    """The hippocampus MRI crop shipped with the package (MSD Task04 case 001, CC BY-SA 4.0)."""
    from importlib.resources import files

    return Path(str(files("medimg") / "data" / "hippocampus_sample" / "hippocampus_001.nii.gz"))


def sample_path() -> Path:
    """Folder of the CT sample shipped with the package."""
    from importlib.resources import files

    return Path(str(files("medimg") / "data" / "ct_sample"))


def _check_output_folder(out: Path) -> None:
    from medimg.core.errors import ImageWriteError

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / SUMMARY_NAME).exists() or _MARKER not in (out / SUMMARY_NAME).read_text(errors="ignore"):
            raise ImageWriteError(
                "output folder exists and is not a previous demo output", path=out,
                expected="a new folder, an empty one, or an earlier `medimg demo` output",
                found="other content", fix="choose another folder with --out",
            )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import medimg
    from medimg.cli._args import parse_floats
    from medimg.cli.progress import Progress
    from medimg.core.image import Image
    from medimg.io import read, write
    from medimg.io.files import same_path
    from medimg.preprocess import resample, window
    from medimg.report import image_summary, montage

    out = Path(args.out)
    src = Path(args.input) if args.input else sample_path()
    spacing = parse_floats(args.spacing, option="--spacing", count=(3,))
    if same_path(out, src):
        from medimg.core.errors import ImageWriteError

        raise ImageWriteError("output folder is the input folder", path=out, fix="choose another --out")
    _check_output_folder(out)
    say = (lambda *a: None) if args.quiet else print
    progress = Progress(7, quiet=args.quiet)
    t0 = time.perf_counter()

    ct = read(src)
    progress.step("read the DICOM series")
    s = image_summary(ct)
    meta = s.get("metadata", {})
    say(f"input:        {src}")
    say(f"found:        {meta.get('modality', '?')} series, "
        f"{s['size_xyz'][0]} x {s['size_xyz'][1]} x {s['size_xyz'][2]} voxels, "
        f"{' x '.join(f'{v:.3g}' for v in s['spacing_mm'])} mm, orientation {s['orientation']}, "
        f"transfer syntax {_syntax_name(meta.get('transfer_syntax'))}")
    it = s["intensity"]
    say(f"intensity:    {it['min']:.0f} .. {it['max']:.0f} HU (mean {it['mean']:.1f})")

    from medimg.io.files import atomic_output_dir

    # a fresh temporary folder beside OUT, renamed into place at the end; an earlier demo output is replaced,
    # nothing else is ever deleted (issue 12: a fixed `.OUT.partial` name could remove a folder of the user's)
    with atomic_output_dir(out, inputs=[src], replace_marker=(SUMMARY_NAME, _MARKER)) as tmp:
        files: dict[str, str] = {}
        write(ct, tmp / "ct.nii.gz", inputs=[src])
        files["volume"] = "ct.nii.gz"
        progress.step("wrote the volume as NIfTI")

        resampled = resample(ct, spacing_mm=spacing)
        soft = window(resampled, preset="abdomen")
        name = f"ct_abdomen_window_{spacing[0]:g}mm.nii.gz"
        write(soft, tmp / name)
        files["windowed_resampled"] = name
        progress.step(f"windowed (abdomen) and resampled to {spacing} mm")

        lung = window(ct, preset="lung").voxels[0]
        bone = window(ct, preset="bone").voxels[0]
        nz = ct.spatial_shape[0]
        picks = sorted({int(round(f * (nz - 1))) for f in (0.1, 0.37, 0.63, 0.9)})
        tiles = [lung[k] for k in picks] + [bone[k] for k in picks]
        labels = [f"lung  z={k}" for k in picks] + [f"bone  z={k}" for k in picks]
        rgb = montage(tiles, columns=len(picks), labels=labels)
        write(Image.from_array(rgb, channel_axis=-1), tmp / "montage_lung_bone.png")
        files["montage"] = "montage_lung_bone.png"
        progress.step("drew the lung/bone montage")

        from medimg.pipelines import run_pipeline
        from medimg.pipelines.writer import write_analysis

        analysis = run_pipeline(ct)
        report = write_analysis(ct, analysis, tmp / "analysis", source=summary_input(args, src), inputs=[src],
                                notes=[])
        files["report"] = "analysis/report.html"
        files["measurements"] = "analysis/measurements.json"
        progress.step("analysed: body, gas, bone and lung (if any) segmented and measured")

        hippo_src = hippocampus_sample_path()
        hippo = read(hippo_src)
        hippo_result = run_pipeline(hippo, "hippocampus")
        hippo_report = write_analysis(hippo, hippo_result, tmp / "analysis_hippocampus", source=str(hippo_src.name),
                                      inputs=[hippo_src], notes=[])
        files["hippocampus_report"] = "analysis_hippocampus/report.html"
        progress.step("hippocampus MRI crop segmented by the shipped model and measured")

        hu = ct.voxels[0].astype(np.float32)
        summary = {
            _MARKER: True,
            "medimg_version": medimg.__version__,
            "input": summary_input(args, src),
            "analysis": analysis.summary,
            "hippocampus_analysis": hippo_result.summary,
            "image": s,
            "hu_fractions": {
                "air (< -900 HU)": round(float((hu < -900).mean()), 4),
                "-900..-500 HU (lung-like density, not a lung mask)": round(
                    float(((hu >= -900) & (hu < -500)).mean()), 4),
                "soft tissue (-100..100 HU)": round(float(((hu >= -100) & (hu <= 100)).mean()), 4),
                "bone (> 300 HU)": round(float((hu > 300).mean()), 4),
            },
            "windowed_resampled": image_summary(soft),
            "outputs": files,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        (tmp / SUMMARY_NAME).write_text(json.dumps(summary, indent=2))
        progress.step("wrote the JSON summary")
    say(f"wrote {out}/: " + ", ".join(sorted(files.values())) + f", {SUMMARY_NAME}")
    for line in ct_volume_lines(analysis.summary):
        say(line)
    say(f"report:       {out / Path(report).relative_to(tmp)}  (open it in a browser)")
    hs = hippo_result.summary
    say(f"hippocampus:  anterior {hs['anterior_volume_ml']:.3f} mL, posterior {hs['posterior_volume_ml']:.3f} mL "
        f"(shipped model, sample case {hippo_src.name})")
    say(f"report:       {out / Path(hippo_report).relative_to(tmp)}")
    return 0


def ct_volume_lines(summary: dict) -> list[str]:
    """What the demo prints about the CT analysis: body, its parts and the lung, or that there is no lung.

    Example:
        >>> ct_volume_lines({"body_volume_ml": 3104.0, "soft_tissue_volume_ml": 2980.2, "lung_volume_ml": 0.0,
        ...                  "gas_volume_ml": 30.2, "bone_volume_ml": 93.6, "lung_parts": 0})[1]
        'lung:         none found (no air region inside the body passes the lung rule; see the report notes)'
    """
    parts = ", ".join(f"{name} {summary[key]:.1f} mL" for name, key in (
        ("soft tissue", "soft_tissue_volume_ml"), ("gas inside the body", "gas_volume_ml"),
        ("bone", "bone_volume_ml"), ("lung", "lung_volume_ml")) if summary.get(key))
    lines = [f"volumes:      body {summary['body_volume_ml']:.1f} mL" + (f" = {parts}" if parts else "")]
    if summary.get("lung_volume_ml"):
        n = summary.get("lung_parts", 0)
        lines.append(f"lung:         {summary['lung_volume_ml']:.1f} mL in {n} part{'s' if n != 1 else ''}")
    else:
        lines.append("lung:         none found (no air region inside the body passes the lung rule; see the report "
                     "notes)")
    return lines


def summary_input(args: argparse.Namespace, src: Path) -> str:
    return "shipped CT sample (TotalSegmentator, CC BY 4.0)" if args.input is None else str(src)
