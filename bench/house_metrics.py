"""How the house reads: the largest files, the longest functions, the worst cyclomatic complexities, the
keyword parameters of the main entry points and the number of places each fit setting gets a default.

    python bench/house_metrics.py            # the working tree
    python bench/house_metrics.py ROOT       # another checkout (to print a before and an after)

Lines are physical lines of the package's own code (tests, bench, docs and the virtual environment left out);
complexity is ruff's C901 (McCabe); a "default" is a function parameter with a default value or an
``add_argument("--name", default=...)`` (an option without ``default=`` counts where argparse's ``set_defaults``
sets it), for each setting of a fit below.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

LEFT_OUT = {"tests", "bench", "docs", ".venv", "runs", ".ci", "deepprob.egg-info"}
SETTINGS = ("lr", "steps", "num_particles", "draws", "engine", "start", "objective", "lr_decay", "guide")
ENTRY_POINTS = {"compare": "compare", "fit_svi": "fit_svi"}


def sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if not (set(p.relative_to(root).parts[:-1]) & LEFT_OUT))


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def keyword_parameters(node: ast.FunctionDef) -> int:
    args = node.args
    return len(args.args) + len(args.kwonlyargs) - (1 if args.args and args.args[0].arg in ("self", "cls") else 0)


def default_sites(tree: ast.AST) -> Counter:
    found = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            positional = a.posonlyargs + a.args
            for arg in positional[len(positional) - len(a.defaults):] if a.defaults else []:
                if arg.arg in SETTINGS:
                    found[arg.arg] += 1
            for arg, default in zip(a.kwonlyargs, a.kw_defaults):
                if default is not None and arg.arg in SETTINGS:
                    found[arg.arg] += 1
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("add_argument", "set_defaults"):
            if node.func.attr == "set_defaults":
                for kw in node.keywords:
                    if kw.arg in SETTINGS:
                        found[kw.arg] += 1
                continue
            names = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
            dest = names[0][2:].replace("-", "_") if names else None
            if dest in SETTINGS and any(kw.arg == "default" for kw in node.keywords):
                found[dest] += 1
    return found


def complexities(root: Path) -> list[tuple[int, str]]:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "C901", "--output-format", "json",
                           "--config", "lint.mccabe.max-complexity=10", "--exit-zero", "."],
                          cwd=root, capture_output=True, text=True)
    found = []
    for item in json.loads(done.stdout or "[]"):
        if (set(Path(item["filename"]).relative_to(root.resolve()).parts[:-1]) & LEFT_OUT):
            continue
        m = re.search(r"`(.+)` is too complex \((\d+) > ", item["message"])
        if m:
            where = f"{Path(item['filename']).relative_to(root.resolve())}:{m.group(1)}"
            found.append((int(m.group(2)), where))
    return sorted(found, reverse=True)


def report(root: Path) -> dict:
    files, funcs, defaults, entry = [], [], Counter(), {}
    for path in sources(root):
        text = path.read_text()
        rel = str(path.relative_to(root))
        files.append((len(text.splitlines()), rel))
        tree = ast.parse(text)
        defaults += default_sites(tree)
        for node in functions(tree):
            funcs.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.name}"))
            if node.name in ENTRY_POINTS and rel.startswith("inference"):
                entry[f"{rel}:{node.name}"] = keyword_parameters(node)
    c901 = complexities(root)
    return {"files": len(files), "lines": sum(n for n, _ in files),
            "largest_files": sorted(files, reverse=True)[:15], "longest_functions": sorted(funcs, reverse=True)[:15],
            "worst_complexity": c901[:15], "over_10": len(c901), "entry_parameters": entry,
            "default_sites": {k: defaults.get(k, 0) for k in SETTINGS}}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    r = report(root)
    print(f"{r['files']} files, {r['lines']} lines (package code)")
    for title, key in (("largest files (lines)", "largest_files"), ("longest functions (lines)", "longest_functions"),
                       ("worst cyclomatic complexity (ruff C901)", "worst_complexity")):
        print(f"\n{title}:")
        for n, where in r[key]:
            print(f"  {n:5d}  {where}")
    print(f"\nfunctions over complexity 10: {r['over_10']}")
    print("\nkeyword parameters:", ", ".join(f"{k} {v}" for k, v in sorted(r["entry_parameters"].items())))
    print("places a default is set:", ", ".join(f"{k} {v}" for k, v in r["default_sites"].items()))


if __name__ == "__main__":
    main()
