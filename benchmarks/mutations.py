"""Mutation checks: does the test suite fail when the code is wrong in the ways that matter? (issue 13, item 5)

Each mutation copies ``src/`` to a temporary folder, breaks one thing there, and runs the test suite against the
copy (``PYTHONPATH`` first), the tests most likely to notice first, stopping after the first failures. A mutation
is *killed* when at least one test fails; the script records which tests failed. The real source is never touched.

    python benchmarks/mutations.py            # all mutations -> benchmarks/results/mutations.json
    python benchmarks/mutations.py --only optimizer_step

Mutations:
* optimizer_step: ``optimizer.step()`` removed from the shared training loop (nothing learns);
* seg_all_background: the segmentation predictor returns all background;
* cls_constant_probs: every classification probability is replaced by the same constant (1 / classes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutations.json"

#: name -> (file under src/medimg, regex, replacement, tests to run first, what it breaks)
MUTATIONS = {
    "optimizer_step": (
        "train/loop.py", r"\n(\s+)optimizer\.step\(\)", r"\n\1pass  # MUTATION: optimizer.step() removed",
        ["tests/tasks/test_learning_happens.py", "tests/tasks/test_task_contract.py", "tests/train"],
        "the optimiser step is removed from the shared training loop",
    ),
    "seg_all_background": (
        "tasks/segment/predictor.py", r"\n(\s+)ids = on_input\.argmax\(axis=0\)\n",
        r"\n\1ids = on_input.argmax(axis=0) * 0  # MUTATION: all background\n",
        ["tests/tasks/segment", "tests/pipelines/test_hippocampus.py", "tests/cli/test_predict_train_paths.py"],
        "the segmentation predictor returns all background",
    ),
    "cls_constant_probs": (
        "tasks/classify/predictor.py", r"\n(\s+)probs = np\.mean\(fold_probs, axis=0\)\n",
        r"\n\1fold_probs = [np.full_like(fp, 0.5 if multilabel else 1.0 / fp.shape[-1]) for fp in fold_probs]"
        r"  # MUTATION: constant probabilities\n\1probs = np.mean(fold_probs, axis=0)\n",
        ["tests/tasks/classify", "tests/cli/test_classify_cli.py", "tests/cli/test_analyze_classifier.py"],
        "every classification probability is the same constant",
    ),
}


def run_mutation(name: str, *, maxfail: int, timeout: int) -> dict:
    rel, pattern, repl, first, what = MUTATIONS[name]
    first = [f for f in first if (ROOT / f).exists()]
    with tempfile.TemporaryDirectory(prefix=f"medimg-mut-{name}-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        target = src / "medimg" / rel
        text = target.read_text()
        new, n = re.subn(pattern, repl, text, count=1)
        if n != 1:
            return {"mutation": what, "applied": False, "error": f"pattern not found in src/medimg/{rel}"}
        target.write_text(new)
        # the copy lives outside the checkout: point the real-data tests at the shared data explicitly
        env = {**os.environ, "PYTHONPATH": str(src),
               "MEDIMG_DATA": os.environ.get("MEDIMG_DATA", str(ROOT.parent / "shared" / "data"))}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", f"--maxfail={maxfail}",
               *first, "tests"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)))
        summary = next((ln.strip("= ") for ln in reversed(proc.stdout.splitlines()) if ln.startswith("=")), "")
        check = subprocess.run([sys.executable, "-c", "import medimg; print(medimg.__file__)"], env=env,
                               capture_output=True, text=True, cwd=ROOT)
        return {"mutation": what, "file": f"src/medimg/{rel}", "applied": True,
                "ran_against": check.stdout.strip(), "killed": proc.returncode != 0 and bool(failed),
                "failed_tests": failed, "pytest_summary": summary, "pytest_exit_code": proc.returncode,
                "seconds": round(time.perf_counter() - t0, 1), "command": " ".join(cmd[2:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=sorted(MUTATIONS), action="append")
    ap.add_argument("--maxfail", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.only or list(MUTATIONS):
        r = run_mutation(name, maxfail=args.maxfail, timeout=args.timeout)
        r["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results[name] = r
        print(f"{name}: {'KILLED' if r.get('killed') else 'SURVIVED'} {r.get('failed_tests', r.get('error'))}")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
    return 0 if all(r.get("killed") for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
