"""Same numbers before and after a change: every example's quick command, with ``--json`` from a fixed seed.

    python bench/same_numbers.py record runs/same/before.json     # at the old commit
    python bench/same_numbers.py record runs/same/after.json      # at the new one
    python bench/same_numbers.py compare runs/same/before.json runs/same/after.json

``record`` runs the tour's quick steps (every example; one at a time, each in this process's children from
``--seed``) and the README's own-model command, and keeps their metrics. ``compare`` walks both records and
lists every number that differs; timings, throughputs and paths are left out (they are not the run's result).
Exit status 1 when something differs.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# keys whose values are measurements of the machine, not of the model: left out of the comparison
TIMING = ("second", "time", "per_s", "_s", "wall", "elapsed", "report", "figure", "path", "out", "command",
          "traceback", "device", "jobs")
OWN_MODEL = ["compare", "--model", "examples/eight_schools.py:model", "--data", "examples/eight_schools.json",
             "--steps", "1000", "--draws", "500"]


def _is_timing(key: str) -> bool:
    return any(part in key.lower() for part in TIMING)


def _run(argv: list[str], out: Path) -> dict:
    command = [sys.executable, "-m", "deepprob", *argv, "--seed", "0", "--json", "--quiet", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"status": "failed", "stderr": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout)


def record(path: Path) -> None:
    from deepprob.examples.tour import STEPS

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for step in STEPS:
            print(f"{step.name} ...", file=sys.stderr, flush=True)
            runs[step.name] = _run(step.argv + step.quick, Path(tmp) / step.name)
        print("own-model ...", file=sys.stderr, flush=True)
        runs["own-model"] = _run(OWN_MODEL, Path(tmp) / "own-model")
        text = json.dumps(runs, indent=1, sort_keys=True).replace(tmp, "<out>")  # the folder is not a result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"{len(runs)} commands recorded in {path}")


def differences(a, b, where: str = "") -> list[str]:
    """Every place where ``a`` and ``b`` differ (numbers exactly; NaN equals NaN), timings left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{where}/{k}: only in one" for k in sorted(set(a) ^ set(b)) if not _is_timing(k)]
        for k in sorted(set(a) & set(b)):
            if not _is_timing(k):
                found += differences(a[k], b[k], f"{where}/{k}")
        return found
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{where}: {a!r} against {b!r}"]


def compare(before: Path, after: Path) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    found = differences(a, b)
    for line in found:
        print(line)
    failed = [name for name, run in b.items() if isinstance(run, dict) and run.get("status") == "failed"]
    print(f"{len(a)} commands: {len(found)} differences; {len(failed)} failed after" +
          (f" ({', '.join(failed)})" if failed else ""))
    return 1 if found or failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("record").add_argument("path", type=Path)
    both = sub.add_parser("compare")
    both.add_argument("before", type=Path)
    both.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.what == "record":
        record(args.path)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
