"""``medimg deid IN OUT``: de-identify DICOM files with the PS3.15 Annex E basic profile."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["add_parser", "run"]

_DESCRIPTION = (
    "De-identify a DICOM file or a folder of DICOM files (PS3.15 Annex E Basic Application Level "
    "Confidentiality Profile). A folder is written to a NEW folder with the same tree and anonymised names; "
    "non-DICOM files are skipped. Pixel data is not changed: burned-in text is not removed. The UID secret "
    "is read from an environment variable (--secret-env), never from the command line."
)


def add_parser(
    subparsers: Any, *, parents: list[argparse.ArgumentParser], help: str
) -> argparse.ArgumentParser:
    """Register ``deid`` on ``subparsers`` (``help`` is the one-line text main.py lists)."""
    from medimg.cli._output import add_output_argument

    p = subparsers.add_parser("deid", parents=parents, help=help, description=_DESCRIPTION)
    p.add_argument("input", metavar="IN", help="a DICOM file or a folder (searched recursively)")
    add_output_argument(p, help="the output file, or a new folder for a folder input")
    p.add_argument("--date-shift", metavar="DAYS", type=int, default=None,
                   help="shift every date by DAYS (non-zero) instead of removing it")
    p.add_argument("--mapping", metavar="FILE", default=None,
                   help="write the original->new ID/UID mapping to FILE (.json or .csv), outside OUT")
    p.add_argument("--secret-env", metavar="VAR", default=None,
                   help="read the UID secret from environment variable VAR (same secret -> same new UIDs)")
    p.add_argument("--patient-id", metavar="NEW", default=None,
                   help="the pseudonym for Patient ID and Patient's Name (default: derived from the original)")
    return p


def run(args: argparse.Namespace) -> int:
    from medimg.cli._output import resolve_output
    from medimg.core.errors import InvalidParameterError
    from medimg.io.deid import deidentify

    resolve_output(args)

    secret = None
    if args.secret_env is not None:
        secret = os.environ.get(args.secret_env)
        if not secret:
            raise InvalidParameterError(
                "environment variable is not set or empty", parameter="--secret-env",
                expected=f"a secret in ${args.secret_env}", found="nothing",
                fix=f"export {args.secret_env}=<a long random string> first")
    report = deidentify(args.input, args.output, date_shift_days=args.date_shift, mapping_file=args.mapping,
                        uid_secret=secret, patient_id=args.patient_id)
    if not args.quiet:
        line = (f"de-identified {report.n_files} file(s) -> {report.output} ({report.n_skipped} skipped; "
                f"{report.n_elements_removed} elements removed, {report.n_elements_replaced} replaced, "
                f"{report.n_uids_remapped} UIDs remapped")
        if report.date_shift_days is not None:
            line += f"; dates shifted by {report.date_shift_days} days"
        if report.mapping_file is not None:
            line += f"; mapping: {report.mapping_file}"
        print(line + ")")
    return 0
