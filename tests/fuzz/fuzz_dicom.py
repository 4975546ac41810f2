"""Fuzz target: DICOM files (.dcm) through `medimg.io.read`.

`TestOneInput(data)` writes the bytes to a temporary file and reads it; a MedimgError is the expected refusal,
anything else escapes and is a finding. Run it with atheris (`python tests/fuzz/fuzz_dicom.py [libFuzzer flags]
[CORPUS]`), or through `python -m medimg.testing.fuzz dicom` / `benchmarks/fuzz.py`.
"""

import sys

from medimg.testing.fuzz import make_target

TestOneInput = make_target("dicom")

if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
