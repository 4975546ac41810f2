"""Fuzz every reader target of `medimg.io.read` at length; write benchmarks/results/fuzz.json.

    python benchmarks/fuzz.py --seconds 100 --runs 1000000            # each target: 100 s or 1e6 executions
    python benchmarks/fuzz.py --targets nii,npz --engine mutate --seconds 30

Each target runs in a child process (`python -m medimg.testing.fuzz`) under an address-space limit
(--memory-mb, default 4096), seeded with small valid files and the small inputs of the hostile corpus
(`medimg.testing.hostile.write_seeds`). Engine `atheris` (coverage-guided libFuzzer; the default when atheris is
installed) or `mutate` (the deterministic mutator of `medimg.testing.fuzz`). A finding is an exception other than
a MedimgError, identified by type + innermost frame; an input that hangs (over --timeout s) or kills the process
(native crash, out of memory) is a finding too, and the child is restarted for the rest of the time. The smallest
reproducer of each finding is saved under benchmarks/results/fuzz_findings/ (files over 64 kB are not kept).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from medimg.testing.fuzz import TARGETS  # noqa: E402
from medimg.testing.hostile import write_seeds  # noqa: E402

MAX_REPRODUCER = 1 << 16


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_target(target: str, *, engine: str, runs: int, seconds: float, timeout: float, memory_mb: int,
               seeds: Path, findings_dir: Path, work: Path, startup_s: float) -> dict:
    """Fuzz one target for ``seconds`` (or ``runs`` executions), restarting the child after a crash or hang."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    executions, restarts, found, notes = 0, 0, {}, []
    end = time.monotonic() + seconds
    corpus = work / f"corpus-{target}"
    while time.monotonic() < end - 2 and executions < runs:
        left = end - time.monotonic()
        stats = work / f"stats-{target}-{restarts}.json"
        inputs = work / f"input-{target}"
        shutil.rmtree(inputs, ignore_errors=True)
        cmd = [sys.executable, "-m", "medimg.testing.fuzz", target, "--engine", engine,
               "--runs", str(runs - executions), "--seconds", f"{left:.0f}", "--seed", str(restarts),
               "--timeout", str(timeout), "--memory-mb", str(memory_mb), "--seeds", str(seeds / target),
               "--stats", str(stats), "--findings", str(findings_dir), "--workdir", str(inputs),
               "--corpus", str(corpus)]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                  timeout=left + 3 * timeout + startup_s)
            code, tail = proc.returncode, (proc.stderr or "")[-4000:]
        except subprocess.TimeoutExpired:
            code, tail = "hang", ""
        doc = json.loads(stats.read_text()) if stats.exists() else {"executions": 0, "findings": []}
        done = re.search(r"stat::number_of_executed_units:\s*(\d+)", tail)  # libFuzzer's own final count
        executions += max(doc["executions"], int(done.group(1)) if done else 0)
        for f in doc["findings"]:
            old = found.get(f["signature"])
            if old is None or f["size"] < old["size"]:
                found[f["signature"]] = {**f, "count": f["count"] + (old["count"] if old else 0)}
            else:
                old["count"] += f["count"]
        if code == 0:
            break
        # the child died: a native crash, a libFuzzer timeout, memory, or our own hard timeout
        restarts += 1
        why = ("Hang (the reader blocked outside Python)" if code == "hang"
               else "Hang (libFuzzer -timeout)" if "timeout" in tail.lower()
               else "Out of memory (libFuzzer/RLIMIT_AS)" if "out-of-memory" in tail.lower()
               else f"Crash (exit code {code}"
               + (f", {signal.Signals(-code).name})" if isinstance(code, int) and code < 0 else ")"))
        last = next(iter(sorted(inputs.glob("input*"))), None) if inputs.exists() else None
        if last is None:  # killed before the first input: start-up (imports, instrumentation) was too slow
            notes.append(f"child stopped before its first input ({code}); raise --startup-s")
            break
        data = last.read_bytes()
        sig = f"{why} @ {target}"
        entry = found.setdefault(sig, {"signature": sig, "message": tail.strip().splitlines()[-1][:300]
                                       if tail.strip() else "", "size": len(data), "count": 0})
        entry["count"] += 1
        if last is not None and len(data) <= MAX_REPRODUCER and len(data) <= entry.get("size", len(data)):
            name = f"{target}-{hashlib.sha1(sig.encode()).hexdigest()[:10]}{last.name[len('input'):]}"
            shutil.copy(last, findings_dir / name)
            entry.update(size=len(data), reproducer=name)
    for f in found.values():  # reproducers over the size limit are not kept in the repository
        rep = findings_dir / f.get("reproducer", "-")
        if rep.exists() and rep.stat().st_size > MAX_REPRODUCER:
            rep.unlink()
            f["reproducer"] = None
    return {"executions": executions, "seconds": round(seconds - max(0.0, end - time.monotonic()), 1),
            "restarts": restarts, "distinct_findings": len(found), "notes": notes,
            "findings": sorted(found.values(), key=lambda e: e["signature"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma-separated, of {','.join(TARGETS)}")
    ap.add_argument("--runs", type=int, default=1_000_000, help="executions per target at most")
    ap.add_argument("--seconds", type=float, default=100.0, help="seconds per target at most")
    ap.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input before it counts as a hang")
    ap.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of the fuzzing process")
    ap.add_argument("--startup-s", type=float, default=300.0,
                    help="time allowed for a child's imports and atheris instrumentation before it is killed")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz.json")
    a = ap.parse_args()
    engine = ("atheris" if _have_atheris() else "mutate") if a.engine == "auto" else a.engine
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    findings_dir = a.out.parent / "fuzz_findings"
    findings_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="medimg-fuzz-bench-") as tmp:
        work = Path(tmp)
        write_seeds(work / "seeds")
        for t in targets:
            t0 = time.perf_counter()
            results[t] = run_target(t, engine=engine, runs=a.runs, seconds=a.seconds, timeout=a.timeout,
                                    memory_mb=a.memory_mb, seeds=work / "seeds", findings_dir=findings_dir,
                                    work=work, startup_s=a.startup_s)
            r = results[t]
            print(f"{t:8s} {r['executions']:8d} executions in {time.perf_counter() - t0:6.0f} s, "
                  f"{r['distinct_findings']} distinct finding(s)", flush=True)
            for f in r["findings"]:
                print(f"    {f['count']:6d} x {f['signature']}: {f['message'][:100]}", flush=True)
    doc = {"engine": engine, "note": "executions per target in the time given; a finding is an exception other "
           "than MedimgError (type + innermost frame), a hang or a dead process",
           "runs_per_target": a.runs, "seconds_per_target": a.seconds, "timeout_s": a.timeout,
           "memory_mb": a.memory_mb, "targets": results,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
           "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
