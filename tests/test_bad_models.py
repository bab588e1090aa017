"""A model that cannot be used fails before any fit, in seconds, as one line naming the model's file and
function, and the site or the model's own line (exit status 2 from the shell, a ModelError from Python)."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch

import deepprob
from deepprob.errors import InputError, ModelError

ROOT = Path(__file__).resolve().parents[1]
HEADER = "import pyro\nimport pyro.distributions as dist\nimport torch\n\n\n"
DATA = {"y": [0.5, 1.5, -0.2, 0.9], "g": [0, 1, 0, 1]}

# one model per kind of mistake, and what the line must say (the model's file and function come first)
BAD = {
    "raises": ("""
        def model(data):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            scale = data["scale"]
            pyro.sample("y", dist.Normal(mu, scale), obs=data["y"])
        """, r"bad.py:model, line 8 \(scale = data\[\"scale\"\]\): KeyError: 'scale'"),
    "no latent": ("""
        def model(data):
            pyro.sample("y", dist.Normal(0.0, 1.0), obs=data["y"])
        """, r"bad.py:model: no latent site .*expected at least one latent variable"),
    "discrete latent": ("""
        def model(data):
            k = pyro.sample("k", dist.Categorical(torch.ones(3) / 3))
            pyro.sample("y", dist.Normal(k.float(), 1.0).expand([4]).to_event(1), obs=data["y"])
        """, r"bad.py:model: the latent site 'k' is discrete .*expected continuous latent variables"),
    "nan density": ("""
        def model(data):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
            with pyro.plate("data", 4):
                pyro.sample("y", dist.Normal(mu, 1.0), obs=data["y"] * float("nan"))
        """, r"bad.py:model: site 'y' has log density nan at the initial point .*expected a finite number"),
    "infinite density": ("""
        def model(data):
            rate = pyro.sample("rate", dist.Gamma(2.0, 2.0))
            with pyro.plate("data", 4):
                pyro.sample("y", dist.Uniform(0.0, rate), obs=data["y"] + 10.0)
        """, r"bad.py:model: site 'y' has log density -inf at the initial point"),
    "shapes": ("""
        def model(data):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0).expand([4, 1]).to_event(2))
            with pyro.plate("data", 4):
                pyro.sample("y", dist.Normal(mu, 1.0), obs=data["y"])
        """, r"bad.py:model: site 'y' has the shape \(4, 4\) but its data \(4,\), so each observation would "
             r"count 4 times"),
    "float index": ("""
        def model(data):
            a = pyro.sample("a", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            with pyro.plate("data", 4):
                pyro.sample("y", dist.Normal(a[data["g"]], 1.0), obs=data["y"])
        """, r"bad.py:model, line 9 \(pyro.sample\(\"y\", dist.Normal\(a\[data\[\"g\"\]\].*IndexError: tensors used "
             r"as indices must be long.*arrive as float tensors: index with data\[...\].long\(\)"),
}


def write(tmp_path, body: str) -> tuple[Path, Path]:
    (tmp_path / "bad.py").write_text(HEADER + textwrap.dedent(body).strip() + "\n")
    (tmp_path / "data.json").write_text(json.dumps(DATA))
    return tmp_path / "bad.py", tmp_path / "data.json"


@pytest.mark.parametrize("kind", list(BAD))
def test_the_shell_says_one_line_and_exits_2_in_seconds(kind, tmp_path):
    model, data = write(tmp_path, BAD[kind][0])
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "deepprob", "compare", "--model", f"{model}:model", "--data",
                           str(data), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                          cwd=ROOT.parent)
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("deepprob compare: error: model "), lines[0]
    import re

    assert re.search(BAD[kind][1], lines[0]), lines[0]
    assert seconds < 10, seconds
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no fit began


def test_from_python_the_same_line_is_a_model_error():
    """deepprob.fit, deepprob.compare and NUTS raise the library's own ModelError (an InputError)."""
    def model(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(mu, 1.0), obs=data["y"] * float("nan"))

    data = {"y": torch.zeros(3)}
    for call in (lambda: deepprob.fit(model, data, guide="meanfield", steps=5, progress=False),
                 lambda: deepprob.compare(model, data, reference=None, steps=5, draws=20)):
        with pytest.raises(ModelError, match="test_bad_models.py:.*model: site 'y' has log density nan") as info:
            call()
        assert isinstance(info.value, InputError)
    from deepprob.inference.evaluation.nuts import run_nuts

    with pytest.raises(ModelError, match="site 'y' has log density nan"):
        run_nuts(model, data, progress=False)


def test_a_model_that_raises_during_a_fit_fails_that_guide_alone():
    """Where the model raises at a point a fit reaches (not at the start), that guide's row says so, naming the
    model's line; the other guides and the table are there."""
    def model(data):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        if (mu > 3.3).any():
            raise RuntimeError("the solver diverged")
        pyro.factor("pull", -0.5 * ((mu - 3.0) / 0.5) ** 2)  # the posterior N(2.4, 0.45²): 2% of it past 3.3, where
        # mean-field's draws go, while the MAP point stays at 2.4

    result = deepprob.compare(model, {}, guides=["meanfield", "delta"], reference=None, steps=1000, draws=30)
    assert set(result.failed) == {"meanfield"} and list(result.table.index) == ["meanfield", "delta"]
    message = result.failed["meanfield"]
    assert "test_bad_models.py:" in message and "line" in message and "raise RuntimeError" in message
    assert message.endswith("RuntimeError: the solver diverged (while fitting meanfield)")
