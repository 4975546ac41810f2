"""`medimg demo`: the main job on the CT series shipped inside the package.

Reads the 20-slice JPEG 2000 CT series (TotalSegmentator sample, CC BY 4.0), prints what it found, and writes
into an output folder: the volume as NIfTI, a soft-tissue-windowed copy resampled to 1.5 mm, a PNG montage in
the lung and bone windows, a JSON summary, and the full ``medimg analyze`` output (CT body/lung/gas/bone
segmentation, volumes in mL, HTML report) in ``analysis/``; the shipped hippocampus model on the shipped MRI
crop in ``analysis_hippocampus/``. The folder is built beside the target and moved
into place only when everything succeeded. The job itself is :func:`medimg.pipelines.demo.run_demo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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


def run(args: argparse.Namespace) -> int:
    from medimg.cli._args import parse_floats
    from medimg.cli.progress import Progress
    from medimg.core.errors import ImageWriteError
    from medimg.io.files import same_path
    from medimg.pipelines.demo import SUMMARY_NAME, check_demo_output, run_demo, sample_path

    out = Path(args.out)
    src = Path(args.input) if args.input else sample_path()
    spacing = parse_floats(args.spacing, option="--spacing", count=(3,))
    if same_path(out, src):
        raise ImageWriteError("output folder is the input folder", path=out, fix="choose another --out")
    check_demo_output(out)
    say = (lambda *a: None) if args.quiet else print
    progress = Progress(6, quiet=args.quiet)
    demo = run_demo(args.input, spacing=spacing, step=progress.step, say=say)
    demo.write(out, step=progress.step)
    say(f"wrote {out}/: " + ", ".join(sorted(demo.summary["outputs"].values())) + f", {SUMMARY_NAME}")
    lines = demo.summary_lines()
    for line in lines[:-1]:
        say(line)
    say(f"report:       {out / 'analysis' / 'report.html'}  (open it in a browser)")
    say(lines[-1])
    say(f"report:       {out / 'analysis_hippocampus' / 'report.html'}")
    return 0
