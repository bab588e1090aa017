"""The documentation: the tutorial's notebooks (committed without outputs, each mapped to its chapter), the API
reference (every name ``deepprob`` exports, its docstring examples run as doctests), and the built pages in
headless Chromium (where ``DEEPPROB_DOCS_BUILD`` names a build: ``.ci/run`` builds the docs and sets it)."""

from __future__ import annotations

import doctest
import json
import os
import re
from pathlib import Path

import pytest

import deepprob

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOTEBOOKS = sorted((DOCS / "notebooks").glob("*.ipynb"))
GUIDES = sorted((DOCS / "guide").glob("*.md"))
BUILD = os.environ.get("DEEPPROB_DOCS_BUILD")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_twelve_notebooks_each_a_chapter_of_the_index_and_none_with_outputs():
    assert len(NOTEBOOKS) == 12, [p.name for p in NOTEBOOKS]
    index = (DOCS / "index.md").read_text()
    for path in NOTEBOOKS:
        assert f"](notebooks/{path.name})" in index, path.name  # a row of the chapters' table
        cells = json.loads(path.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code and cells[0]["cell_type"] == "markdown", path.name
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{path.name} has outputs"


def test_the_readme_is_what_a_newcomer_needs_first_and_the_measured_pages_are_in_the_docs():
    readme = README.read_text()
    assert len(readme.splitlines()) < 150  # what it is, two commands, the library in ten lines, the docs
    commands = re.findall(r"^python3 -m venv .venv && .*$", readme, re.M)
    assert len(commands) == 2 and "deepprob tour" in commands[0] and "pytest" in commands[1], commands
    assert "python -m sphinx -W -b html docs" in readme
    index = (DOCS / "index.md").read_text()
    assert len(GUIDES) >= 4
    for page in GUIDES:  # every guide page is in a toctree, so the build renders and links it
        assert re.search(rf"^guide/{page.stem}$", index, re.M), page.name
        for image in re.findall(r"\]\((\.\./img/[^)]+)\)", page.read_text()):
            assert (page.parent / image).resolve().is_file(), (page.name, image)


def test_the_api_reference_names_every_export():
    api = (DOCS / "api.rst").read_text()
    for name in deepprob.__all__:
        assert re.search(rf"^\.\. auto\w+:: (deepprob\.[\w.]*\.)?{name}$", api, re.M), name
        assert getattr(deepprob, name).__doc__, name


def normal_mean_model(y):
    import pyro
    import pyro.distributions as dist

    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    with pyro.plate("rows", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.mark.parametrize("name", ["fit", "fit_family", "mlp"])
def test_docstring_examples_run_as_doctests(name):
    """The docstrings' examples run, with ``model`` the normal mean and ``data`` four observations (as they say)."""
    import pyro
    import torch

    from deepprob.adversarial.nets import mlp
    from deepprob.inference.fitting.svi import fit as fit_family

    obj = {"mlp": mlp, "fit_family": fit_family}.get(name) or getattr(deepprob, name)
    pyro.set_rng_seed(0)
    globs = {"deepprob": deepprob, "model": normal_mean_model, "data": torch.tensor([0.5, 1.5, 1.0, 2.0]),
             "mlp": mlp}
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs=globs)
    assert tests and tests[0].examples, name
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.skipif(not BUILD, reason="DEEPPROB_DOCS_BUILD names no built docs (.ci/run builds them and sets it)")
def test_the_built_pages_load_in_chromium_with_their_figures_and_the_notebooks_executed():
    from deepprob.examples.tour_page import find_browser, images_loaded

    build = Path(BUILD)
    pages = {p.stem: p for p in (build / "notebooks").glob("*.html")}
    assert set(pages) == {p.stem for p in NOTEBOOKS}
    for stem, page in pages.items():  # executed: outputs, and at least one figure a chapter
        html = page.read_text()
        assert "cell_output" in html and "<img" in html, stem
    api = (build / "api.html").read_text()
    for name in deepprob.__all__:
        assert re.search(rf'id="deepprob\.([\w.]*\.)?{name}"', api), name
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium)")
    guides = sorted((build / "guide").glob("*.html"))
    assert {p.stem for p in guides} == {p.stem for p in GUIDES}
    for page in [build / "index.html", build / "api.html", *guides, *pages.values()]:
        loaded, total = images_loaded(page, browser)
        assert loaded == total, (page.name, loaded, total)
