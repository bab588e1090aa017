"""The tour's page: compare tables with one row per guide, k-hat bands, claims, and every figure loading in
headless Chromium (skipped, saying why, where it is not installed)."""

from __future__ import annotations

import re

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deepprob.examples.tour import judge  # noqa: E402
from deepprob.examples.tour_page import find_browser, images_loaded, khat_class, render_html, screenshot  # noqa: E402

GUIDES = {"laplace": {"elbo": -40.3, "seconds": 0.74, "khat": 0.05, "mean_err_sd": 0.02, "sd_err_sd": 0.01},
          "meanfield": {"elbo": -45.1, "seconds": 0.5, "khat": 0.62, "mean_err_sd": 0.3, "sd_err_sd": 0.76},
          "fullrank": {"elbo": -40.2, "seconds": 0.9, "khat": 0.91, "mean_err_sd": 0.01, "sd_err_sd": 0.02,
                       "kl_to_exact": 8.9e-9}}


def summary(tmp_path, figures=("a/fit.png", "b/gan.png")):
    for name in figures:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot([0, 1], [0, 1])
        fig.savefig(path)
        plt.close(fig)
    steps = [
        {"name": "linreg", "status": "ok", "explain": "Every guide against the exact posterior.", "keys": ["guides"],
         "metrics": {"guides": GUIDES}, "seconds": 3.0, "command": "deepprob compare linreg", "figures": [figures[0]]},
        {"name": "gan-ring", "status": "ok", "explain": "Mode dropping.", "keys": ["modes_covered"],
         "metrics": {"modes_covered": 5, "num_modes": 8}, "seconds": 1.0, "command": "deepprob gan",
         "figures": list(figures[1:])},
    ]
    by_name = {s["name"]: s["metrics"] for s in steps}
    for s in steps:
        s["claim"] = judge(s["name"], s["metrics"], by_name)
    return {"quick": True, "seed": 0, "device": "cpu", "steps": steps}


def test_compare_tables_have_one_row_per_guide_and_khat_bands(tmp_path):
    page = render_html(summary(tmp_path))
    table = re.search(r"<table class='compare'>.*?</table>", page, re.S).group(0)
    body = re.search(r"<tbody>(.*)</tbody>", table, re.S).group(1)
    assert re.findall(r"<tr><th>(\w+)</th>", body) == list(GUIDES)  # one row per guide
    assert [khat_class(v) for v in (0.05, 0.62, 0.91)] == ["khat-good", "khat-ok", "khat-bad"]
    for css in ("khat-good", "khat-ok", "khat-bad"):
        assert f"<td class='{css}'>" in table
    assert "KL(q||p)" in table and "8.9e-09" in table  # the shell's column and format
    assert "mean-field misses the correlations" in page and "0.76" in page  # the summary's claim
    assert "the standard GAN drops modes: 5/8 modes covered" in page


def test_a_claim_whose_numbers_are_missing_says_so():
    assert judge("gan-ring", {"num_modes": 8}, {})["holds"] is None
    assert judge("gan-ring", {"modes_covered": 8, "num_modes": 8}, {})["holds"] is False


@pytest.mark.skipif(find_browser() is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_every_figure_loads_in_headless_chromium(tmp_path):
    (tmp_path / "index.html").write_text(render_html(summary(tmp_path)))
    assert images_loaded(tmp_path / "index.html") == (2, 2)
    png = screenshot(tmp_path / "index.html", tmp_path / "shot.png", height=900)
    assert png.stat().st_size > 10_000
    # the check catches a missing figure
    (tmp_path / "b" / "gan.png").unlink()
    assert images_loaded(tmp_path / "index.html") == (1, 2)
