"""deepprob tour: the report's files, its schema, failure handling and reproducibility."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepprob.cli import main
from deepprob.examples import tour

TIMING_KEYS = {"seconds", "fit_seconds", "seconds_per_epoch", "report"}


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def run_tour(out, only, capsys, *extra):
    code = main(["tour", "--quick", "--only", only, "--quiet", "--out", str(out), *extra])
    capsys.readouterr()
    return code, json.loads((out / "summary.json").read_text())


def test_summary_schema_images_and_reproducibility(tmp_path, capsys):
    code, summary = run_tour(tmp_path / "a", "kl,vae-onehot", capsys, "--jobs", "2")
    assert code == 0
    assert {"quick", "seed", "device", "jobs", "steps"} <= set(summary)
    assert summary["jobs"] == 2 and [s["name"] for s in summary["steps"]] == ["kl", "vae-onehot"]  # story order
    for step in summary["steps"]:
        assert {"name", "command", "status", "seconds", "metrics", "figures", "explain"} <= set(step)
        assert step["status"] == "ok" and step["command"].startswith("deepprob ")
        assert step["metrics"]["example"] == step["command"].split()[1]
    assert summary["steps"][1]["metrics"]["latent_accuracy"] >= 0.99

    page = (tmp_path / "a" / "index.html").read_text()
    images = re.findall(r"<img src='([^']+)'", page)
    assert len(images) >= 2
    for src in images:
        assert (tmp_path / "a" / src).stat().st_size > 1000

    _, again = run_tour(tmp_path / "b", "kl,vae-onehot", capsys, "--jobs", "1")  # the same, one at a time
    for first, second in zip(summary["steps"], again["steps"]):
        one = json.dumps(without_timings(first["metrics"])).replace(str(tmp_path / "a"), "OUT")
        two = json.dumps(without_timings(second["metrics"])).replace(str(tmp_path / "b"), "OUT")
        assert one == two


def test_a_failed_step_is_reported_and_the_others_still_run(tmp_path, capsys, monkeypatch):
    broken = tour.Step("broken", ["linreg", "--guide", "no-such-guide"], [], "fails on purpose", [])
    monkeypatch.setattr(tour, "STEPS", [broken, *[s for s in tour.STEPS if s.name == "kl"]])
    code, summary = run_tour(tmp_path, "broken,kl", capsys)
    assert code == 2
    assert [s["status"] for s in summary["steps"]] == ["failed", "ok"]
    assert "unknown guide" in summary["steps"][0]["error"]
    assert "FAILED" in (tmp_path / "index.html").read_text()


def test_unknown_step_is_an_input_error(capsys):
    assert main(["tour", "--only", "nope", "--quiet"]) == 2
    assert "--only 'nope': unknown step(s) nope" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (Debian package chromium)")
def test_page_renders_in_chromium(tmp_path, capsys):
    run_tour(tmp_path, "kl", capsys)
    script = tmp_path / "check.html"
    page = Path(tmp_path / "index.html").read_text()
    # after load, write every image's naturalWidth into the DOM so that --dump-dom shows it
    page = page.replace("</body>", "<script>window.onload = () => { document.body.setAttribute('data-widths', "
                        "[...document.images].map(i => i.naturalWidth).join(',')); };</script></body>")
    script.write_text(page)
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", script.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    widths = re.search(r'data-widths="([^"]*)"', dom).group(1).split(",")
    assert widths and all(int(w) > 0 for w in widths)


def test_the_hard_posterior_claim_holds_only_where_no_trusted_guide_is_off():
    honest = {"guides": {"fullrank": {"trust": "no", "mean_err_sd": 17.7, "sd_err_sd": 4.2},
                         "auto": {"trust": "yes", "mean_err_sd": 0.05, "sd_err_sd": 0.08},
                         "auto+psis": {"trust": "corrected", "mean_err_sd": 9.0, "sd_err_sd": 9.0}}}
    text, holds = tour.CLAIMS["hard-latent-gp"](honest, {})
    assert holds and "trusted: auto (0.08 sds off)" in text and "fullrank (17.70)" in text
    honest["guides"]["fullrank"]["trust"] = "corrected"  # a verdict that trusts a guide 17 sds off: caught
    assert not tour.CLAIMS["hard-latent-gp"](honest, {})[1]
