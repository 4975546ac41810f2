"""Fuzzing :func:`medimg.io.read`: one target per reader, an engine loop, and a findings store.

A target is a function ``TestOneInput(data: bytes)`` (the atheris interface) that writes ``data`` to a
temporary file with the reader's suffix and reads it with :func:`medimg.io.read`. A
:class:`medimg.core.errors.MedimgError` is the expected outcome for bad bytes; any other exception escapes and
is a finding (as in atheris). :func:`fuzz` drives a target either with atheris (coverage-guided libFuzzer) or
with a small deterministic mutation fuzzer written here (same interface, no native dependency), and records
each distinct finding (exception type + innermost frame) with its smallest reproducer.

Run one target from the command line (used by the tests and by ``benchmarks/fuzz.py``)::

    python -m medimg.testing.fuzz nii --engine mutate --runs 500 --seed 0 --stats stats.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

__all__ = ["TARGETS", "make_target", "signature", "mutate", "fuzz", "main"]

#: target -> file suffixes; the suffix is chosen from the data's magic bytes where a target covers two formats
TARGETS: dict[str, tuple[str, ...]] = {"dicom": (".dcm",), "nii": (".nii",), "nii_gz": (".nii.gz",),
                                       "npz": (".npz",), "itk": (".mha", ".nrrd"), "raster": (".png", ".tif")}


def _suffix(target: str, data: bytes) -> str:
    if target == "itk":
        return ".nrrd" if data[:4] == b"NRRD" else ".mha"
    if target == "raster":
        return ".png" if data[:4] == b"\x89PNG" else ".tif"
    return TARGETS[target][0]


class Hang(Exception):
    """Raised by the per-input alarm: the reader used more CPU time than the limit."""


def make_target(target: str, folder: str | os.PathLike[str] | None = None) -> Callable[[bytes], None]:
    """``TestOneInput(data)`` for ``target``: write the bytes to a file in ``folder`` (default: a new temporary
    folder) and read it with medimg; the file stays there until the next input (the reproducer of a hang).

    MedimgError (the reader refused the bytes cleanly) is swallowed; anything else propagates.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown fuzz target {target!r}; expected one of {sorted(TARGETS)}")
    from medimg.core.errors import MedimgError
    from medimg.io import read

    state = {"folder": None if folder is None else Path(folder)}

    def TestOneInput(data: bytes) -> None:  # noqa: N802 - the atheris name
        if state["folder"] is None:
            state["folder"] = Path(tempfile.mkdtemp(prefix=f"medimg-fuzz-{target}-"))
        state["folder"].mkdir(parents=True, exist_ok=True)
        path = state["folder"] / f"input{_suffix(target, data)}"
        for old in state["folder"].iterdir():
            old.unlink()
        path.write_bytes(data)
        try:
            read(path)
        except MedimgError:
            pass

    TestOneInput.state = state  # type: ignore[attr-defined]
    return TestOneInput


def signature(exc: BaseException) -> str:
    """'ExceptionType @ file.py:function' of the innermost frame (a finding's identity)."""
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return type(exc).__name__
    top = tb[-1]
    parts = Path(top.filename).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else top.filename
    return f"{type(exc).__name__} @ {short}:{top.name}"


_INTERESTING = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                2**62, 2**63 - 1, 9, 99999999999996]


def mutate(data: bytes, rng: random.Random, others: list[bytes] | None = None, max_len: int = 1 << 16) -> bytes:
    """One to four random edits of ``data``: bit flips, interesting integers, byte runs, splices, cuts."""
    b = bytearray(data or b"\0")
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        i = rng.randrange(len(b)) if b else 0
        if op == 0:  # flip a bit
            if b:
                b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # random byte
            if b:
                b[i] = rng.randrange(256)
        elif op in (2, 3):  # an interesting integer, little or big endian, 1/2/4/8 bytes
            size = rng.choice((1, 2, 4, 8))
            v = rng.choice(_INTERESTING) & ((1 << (8 * size)) - 1)
            fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[size]
            raw = struct.pack(("<" if op == 2 else ">") + fmt, v)
            b[i:i + size] = raw
        elif op == 4:  # delete a run
            n = rng.randint(1, max(1, min(64, len(b) // 4 or 1)))
            del b[i:i + n]
        elif op == 5:  # insert a run of one value or random bytes
            n = rng.randint(1, 64)
            run = bytes([rng.randrange(256)]) * n if rng.random() < 0.5 else rng.randbytes(n)
            b[i:i] = run
        elif op == 6:  # duplicate a chunk
            n = rng.randint(1, 64)
            b[i:i] = b[i:i + n]
        elif op == 7:  # truncate
            if len(b) > 1:
                del b[rng.randrange(1, len(b)):]
        else:  # splice with another input, or write digits (text headers: NDims, sizes, ...)
            if others and rng.random() < 0.5:
                o = rng.choice(others)
                j = rng.randrange(len(o)) if o else 0
                b = b[:i] + bytearray(o[j:])
            else:
                b[i:i + rng.randint(1, 4)] = str(rng.choice(_INTERESTING)).encode()
    return bytes(b[:max_len])


class _Store:
    """Executions and distinct findings, written to ``stats`` (JSON) and ``findings/`` (reproducers)."""

    def __init__(self, target: str, stats: Path | None, findings: Path | None) -> None:
        self.target = target
        self.stats = stats
        self.findings = findings
        self.executions = 0
        self.found: dict[str, dict] = {}
        self.started = time.perf_counter()
        self._last_write = 0.0

    def record(self, exc: BaseException, data: bytes) -> None:
        sig = signature(exc)
        old = self.found.get(sig)
        if old is not None:
            old["count"] += 1
            if len(data) >= old["size"]:
                return
        entry = {"signature": sig, "message": str(exc)[:300], "size": len(data),
                 "count": 1 if old is None else old["count"]}
        if self.findings is not None:
            self.findings.mkdir(parents=True, exist_ok=True)
            name = f"{self.target}-{hashlib.sha1(sig.encode()).hexdigest()[:10]}{_suffix(self.target, data)}"
            (self.findings / name).write_bytes(data)
            entry["reproducer"] = name
        self.found[sig] = entry
        self.write(force=True)

    def write(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.stats is None or (not force and now - self._last_write < 2.0):
            return
        self._last_write = now
        doc = {"target": self.target, "executions": self.executions, "seconds": round(now - self.started, 1),
               "findings": sorted(self.found.values(), key=lambda e: e["signature"])}
        from medimg.io.files import atomic_output

        with atomic_output(self.stats) as tmp:
            tmp.write_text(json.dumps(doc, indent=1))


def _alarm(signum, frame):  # noqa: ARG001
    raise Hang("the reader used more CPU time than the per-input limit")


def fuzz(target: str, seeds: list[bytes], *, engine: str = "mutate", runs: int = 1000, seconds: float = 60.0,
         seed: int = 0, timeout_s: float = 10.0, stats: Path | None = None, findings: Path | None = None,
         corpus_dir: Path | None = None, workdir: Path | None = None) -> dict:
    """Run ``target`` for ``runs`` executions or ``seconds``, whichever ends first; return the stats document.

    ``engine="atheris"`` uses libFuzzer (coverage-guided; needs the atheris package), ``"mutate"`` the
    deterministic mutator of this module. Seeds are run first, unmutated.
    """
    store = _Store(target, stats, findings)
    if engine == "atheris":
        _instrumented_readers(target)
    test = make_target(target, workdir)
    alarm = engine != "atheris"  # libFuzzer has its own -timeout (on SIGALRM)
    if alarm:  # CPU time, not wall time: a busy machine must not turn slow inputs into hangs
        signal.signal(signal.SIGPROF, _alarm)

    def one(data: bytes) -> None:
        store.executions += 1
        if alarm:
            signal.setitimer(signal.ITIMER_PROF, timeout_s)
        try:
            test(data)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - every escape (PanicException included) is a finding
            store.record(exc, data)
        finally:
            if alarm:
                signal.setitimer(signal.ITIMER_PROF, 0)
        store.write()

    try:
        if engine == "atheris":
            _run_atheris(one, seeds, runs=runs, seconds=seconds, seed=seed, corpus_dir=corpus_dir,
                         timeout_s=timeout_s)
        else:
            rng = random.Random(seed)
            end = time.perf_counter() + seconds
            for s in seeds:
                one(s)
            while store.executions < runs and time.perf_counter() < end:
                one(mutate(rng.choice(seeds), rng, seeds))
    finally:
        store.write(force=True)
        used = test.state["folder"]  # type: ignore[attr-defined]
        if workdir is None and used is not None:
            for f in used.iterdir():
                f.unlink()
            used.rmdir()
    return {"target": target, "executions": store.executions, "findings": sorted(store.found.values(),
                                                                                  key=lambda e: e["signature"])}


#: what atheris instruments for coverage, per target (instrumenting everything loaded takes minutes)
_INSTRUMENT = {"dicom": ("pydicom",), "nii": ("nibabel",), "nii_gz": ("nibabel",), "npz": ("zipfile",),
               "itk": (), "raster": ("PIL",)}
_READER_MODULE = {"dicom": "dicom", "nii": "nifti", "nii_gz": "nifti", "npz": "npz", "itk": "itk_formats",
                  "raster": "raster"}


def _instrumented_readers(target: str) -> None:
    """Import medimg's reader for ``target`` and the library it uses under atheris' coverage instrumentation."""
    import importlib

    import atheris

    with atheris.instrument_imports(include=["medimg.io", *_INSTRUMENT[target]]):
        importlib.import_module(f"medimg.io.{_READER_MODULE[target]}")
        importlib.import_module("medimg.io.api")


def _run_atheris(one: Callable[[bytes], None], seeds: list[bytes], *, runs: int, seconds: float, seed: int,
                 corpus_dir: Path | None, timeout_s: float) -> None:
    import atheris

    corpus = Path(corpus_dir or tempfile.mkdtemp(prefix="medimg-fuzz-corpus-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (corpus / hashlib.sha1(s).hexdigest()).write_bytes(s)
    argv = [sys.argv[0], f"-runs={runs}", f"-max_total_time={max(1, int(seconds))}", f"-seed={seed + 1}",
            f"-timeout={max(1, int(timeout_s))}", "-max_len=65536", "-rss_limit_mb=0", "-print_final_stats=1",
            f"-artifact_prefix={corpus.parent / 'artifact-'}", str(corpus)]
    atheris.Setup(argv, one)
    try:
        atheris.Fuzz()
    except SystemExit:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medimg.testing.fuzz", description=__doc__.splitlines()[0])
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--engine", choices=("mutate", "atheris"), default="mutate")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=10.0,
                   help="CPU seconds per input before it counts as a hang (libFuzzer: wall seconds)")
    p.add_argument("--seeds", type=Path, help="folder of seed files (default: medimg.testing.hostile.write_seeds)")
    p.add_argument("--corpus", type=Path, help="atheris corpus folder (grows)")
    p.add_argument("--stats", type=Path)
    p.add_argument("--findings", type=Path)
    p.add_argument("--workdir", type=Path, help="folder of the input under test (default: a temporary one)")
    p.add_argument("--memory-mb", type=int, default=0, help="address-space limit (RLIMIT_AS), 0: none")
    a = p.parse_args(argv)
    if a.memory_mb:
        import resource

        lim = a.memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    import logging
    import shutil
    import warnings

    logging.disable(logging.CRITICAL)  # readers log and warn about odd files; the fuzzer only wants exceptions
    warnings.simplefilter("ignore")
    if a.seeds is None:
        from medimg.testing.hostile import write_seeds

        tmp = Path(tempfile.mkdtemp(prefix="medimg-fuzz-seeds-"))
        seeds = [f.read_bytes() for f in write_seeds(tmp)[a.target]]
        shutil.rmtree(tmp)
    else:
        seeds = [f.read_bytes() for f in sorted(a.seeds.iterdir()) if f.is_file()]
    doc = fuzz(a.target, seeds, engine=a.engine, runs=a.runs, seconds=a.seconds, seed=a.seed, timeout_s=a.timeout,
               stats=a.stats, findings=a.findings, corpus_dir=a.corpus, workdir=a.workdir)
    print(json.dumps({"target": doc["target"], "executions": doc["executions"],
                      "findings": [f["signature"] for f in doc["findings"]]}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
