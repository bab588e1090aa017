"""The import graph: dependencies run one way (models <- guides <- inference <- examples/cli), no cycles, the
compiler a package of its own (plain torch: no Pyro, nothing of inference), the compiled engine only where a fit
reaches it, no Pyro in the plain-torch code, and a command line that answers --help without the heavy imports.

The layers, bottom up:

    base        errors, progress, devices, seeds, files, pool, optim, training, plots, names, parallel
    core        log p and log q of Pyro programs: logdensity, traces, batching, subsample
    datasets    the data layer                       models      Pyro models
    compiler    plain torch: trace a step, compile it (C or Inductor)
    guides      variational families (Pyro), each with its pure form; no compiler
    adversarial plain torch: discriminators, GANs (may compile its steps); no Pyro, nothing of inference
    inference   fitting <- evaluation; fitting <- generative
    examples    one command each                     cli         the shell
"""

import ast
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository root is the deepprob package

# each module's layer, and the layers it may import from (its own included)
BASE = {"deepprob.errors", "deepprob.optim", "deepprob.plots", "deepprob.names",
        "deepprob.parallel", "deepprob.progress", "deepprob.devices", "deepprob.seeds", "deepprob.files",
        "deepprob.pool", "deepprob.training"}  # plain torch
# log p and log q of Pyro programs, their plates, and models run at many draws at once
CORE = {"deepprob.logdensity", "deepprob.subsample", "deepprob.traces", "deepprob.batching"}
ALLOWED = {
    "base": {"base"},
    "core": {"base", "core"},
    "datasets": {"base", "datasets"},
    "models": {"base", "models"},
    "guides": {"base", "core", "models", "guides"},
    "compiler": {"base", "compiler"},
    "inference": {"base", "core", "models", "guides", "inference"},  # the package's own __init__
    "inference.fitting": {"base", "core", "models", "guides", "compiler", "inference.fitting"},
    "inference.evaluation": {"base", "core", "datasets", "models", "guides", "compiler", "inference.fitting",
                             "inference.evaluation"},
    "inference.generative": {"base", "core", "datasets", "models", "guides", "compiler", "adversarial",
                             "inference.fitting", "inference.evaluation", "inference.generative"},
    "adversarial": {"base", "datasets", "compiler", "adversarial"},
    "examples": {"base", "core", "datasets", "models", "guides", "compiler", "inference", "inference.fitting",
                 "inference.evaluation", "inference.generative", "adversarial", "examples"},
    "cli": {"base", "examples", "cli"},
}
# the examples' helpers (not commands): the commands may import these, not each other
EXAMPLE_HELPERS = {"deepprob.examples", "deepprob.examples.options", "deepprob.examples.common",
                   "deepprob.examples.problems", "deepprob.examples.commands", "deepprob.examples.vae_figures",
                   "deepprob.examples.image_data", "deepprob.examples.avb_figures",
                   "deepprob.examples.tour_page"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["deepprob", *parts])


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        if rel[0] in ("tests", "bench", ".venv", "runs", "build", "docs") or rel[0].startswith("."):
            continue
        found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The deepprob modules ``name`` imports, at the top or inside functions (``from deepprob.x import y``
    counts for ``deepprob.x.y`` where that is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t in known and t != name}
    return out


def layer(name: str) -> str:
    if name in BASE:
        return "base"
    if name in CORE:
        return "core"
    parts = name.split(".")
    if parts[1] == "inference" and len(parts) > 2:
        return f"inference.{parts[2]}"
    return parts[1]


# the package itself only names its public functions (imported lazily), and ``python -m deepprob`` runs the cli
GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()
         if name not in ("deepprob", "deepprob.__main__")}


def test_no_cycles():
    state: dict[str, int] = {}

    def visit(name, stack):
        state[name] = 1
        for dep in GRAPH[name]:
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep, stack + [dep])
        state[name] = 2

    for name in GRAPH:
        if name not in state:
            visit(name, [name])


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_dependencies_run_one_way(name):
    own = layer(name)
    wrong = sorted(dep for dep in GRAPH[name] if layer(dep) not in ALLOWED[own])
    assert not wrong, f"{name} ({own}) imports {wrong}"
    if own != "compiler":  # the compiler is reached through its package's small API, not its modules
        inside = sorted(dep for dep in GRAPH[name] if dep.startswith("deepprob.compiler."))
        assert not inside, f"{name} imports the compiler's modules {inside}: use deepprob.compiler's API"
    if name.startswith("deepprob.examples.") and name not in EXAMPLE_HELPERS:
        others = sorted(dep for dep in GRAPH[name]
                        if dep.startswith("deepprob.examples.") and dep not in EXAMPLE_HELPERS)
        assert not others, f"the example {name} imports the examples {others}"


def test_the_rules_catch_a_wrong_import():
    """The check itself: a guide importing the compiled engine or the compiler, a model importing a guide, the
    compiler or the adversarial code importing inference, or fitting importing evaluation, is refused."""
    assert layer("deepprob.inference.fitting.svi_steps") not in ALLOWED["guides"]
    assert layer("deepprob.compiler.compiling") not in ALLOWED["guides"]
    assert layer("deepprob.guides.registry") not in ALLOWED["models"]
    assert layer("deepprob.logdensity") not in ALLOWED["adversarial"]
    assert layer("deepprob.inference.fitting.svi") not in ALLOWED["compiler"] | ALLOWED["adversarial"]
    assert layer("deepprob.inference.evaluation.compare") not in ALLOWED["inference.fitting"]


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


def loaded_by(code: str, *prefixes: str) -> list[str]:
    """The modules whose names start with one of ``prefixes`` that running ``code`` in a fresh process loads."""
    out = run_python(f"import sys\n{code}\nprint(sorted(m for m in sys.modules if m.startswith({prefixes!r})))")
    return eval(out.strip())  # a list of names, printed by the line above


def test_importing_the_guides_does_not_load_the_compiled_engine():
    code = ("import importlib, deepprob.guides\nfrom deepprob.guides.registry import GUIDES\n"
            "for target in GUIDES.values(): importlib.import_module(target.split(':')[0])")
    assert loaded_by(code, "deepprob.inference", "deepprob.compiler", "torch._inductor") == []


def test_the_compiler_loads_no_pyro():
    """Every module of the compiler imported, and a step compiled: neither Pyro nor deepprob.inference loaded."""
    code = ("import pkgutil, importlib, torch, deepprob.compiler as c\n"
            "for m in pkgutil.walk_packages(c.__path__, 'deepprob.compiler.'): importlib.import_module(m.name)\n"
            "step = c.compile_step(lambda x: (x * 2 + 1).sum(), [torch.ones(3)])\n"
            "assert float(step(torch.ones(3))) == 9.0")
    assert loaded_by(code, "pyro", "deepprob.inference") == []
    assert loaded_by(code, "deepprob.compiler.c.") != []  # the check sees what it looks for


def test_the_adversarial_code_trains_a_gan_without_pyro():
    out = run_python(
        "import sys, torch\n"
        "from deepprob.adversarial import GANConfig, GANTrainer, mlp\n"
        "from deepprob.datasets.points import ring\n"
        "cloud = ring(n=500)\n"
        "trainer = GANTrainer(mlp(2, [16], 2), mlp(2, [16], 1), lambda n: cloud.points[torch.randint(500, (n,))], 2,\n"
        "                     GANConfig(d_steps=1, batch_size=16, final_lr_fraction=0.5))\n"
        "trainer.train(5, progress=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyro', 'arviz')))")
    assert out.strip() == "[]", out


@pytest.mark.parametrize("argv", [["--help"], ["linreg", "--help"], ["compare", "--help"],
                                  ["compare", "logreg", "--help"], ["linreg", "--guide", "nope"]])
def test_help_and_bad_arguments_answer_in_under_a_second(argv):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "deepprob", *argv], capture_output=True, text=True, timeout=60,
                              cwd=ROOT.parent)
        times.append(time.perf_counter() - start)
        assert done.returncode == (0 if "--help" in argv else 2), done.stderr
    assert statistics.median(times) < 1.0, times
    out = run_python("import contextlib, io, sys; from deepprob.examples.commands import parse\n"
                     f"with contextlib.redirect_stdout(io.StringIO()):\n    try: parse({argv!r})\n"
                     "    except BaseException: pass\n"
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pyro', 'numpy')))")
    assert out.strip() == "[]", out
