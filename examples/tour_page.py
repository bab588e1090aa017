"""The tour's ``index.html``: a summary of what each step claims and whether the run shows it, then a section
per step with its numbers (the compare tables as tables, with the shell's columns), figures and command.

k-hat cells are coloured by the bands of Vehtari et al. (PSIS): below 0.5 the importance weights of the
guide towards the posterior are reliable, 0.5 to 0.7 usable with care, above 0.7 not (the guide misses
mass the posterior has). A small script marks a figure that did not load, and counts the loaded ones in
``data-images-loaded`` of the body (the screenshot check reads it).
"""

from __future__ import annotations

import html
from pathlib import Path

from deepprob.inference.evaluation.compare import COLUMN_NOTES, COLUMNS

KHAT_BANDS = [  # (upper bound, css class, meaning)
    (0.5, "khat-good", "k-hat < 0.5: the guide is a good importance sampler of the posterior"),
    (0.7, "khat-ok", "0.5 to 0.7: usable with care; the guide's tails are somewhat light"),
    (float("inf"), "khat-bad", "k-hat > 0.7: the guide misses posterior mass; its estimates are not to be trusted"),
]
TABLE_KEYS = ("guides",)  # metrics that are {guide: row} and become a compare table


def esc(value) -> str:
    return html.escape(str(value))


def number(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def khat_class(value) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return next(css for bound, css, _ in KHAT_BANDS if value < bound)


def compare_table(rows: dict[str, dict], reference: dict | None = None) -> str:
    """One row per guide (and the reference), the shell's columns (:data:`~.compare.COLUMNS`)."""
    every = list(rows.values()) + ([reference] if reference else [])
    columns = [c for c in COLUMNS if any(isinstance(r, dict) and c[0] in r for r in every)]
    head = "".join(f"<th title='{esc(COLUMN_NOTES.get(key, ''))}'>{esc(header)}</th>" for key, header, _ in columns)
    body = []
    for name, row in rows.items():
        if not isinstance(row, dict):
            continue
        if "error" in row:
            body.append(f"<tr><th>{esc(name)}</th><td colspan='{len(columns)}' class='failed'>failed: "
                        f"{esc(row['error'])}</td></tr>")
            continue
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            text = fmt.format(value).strip() if isinstance(value, (int, float, str)) and not isinstance(value, bool) \
                else "-"
            css = f" class='{khat_class(value)}'" if key == "khat" else ""
            title = f" title='{esc(row['trust_reason'])}'" if key == "trust" and row.get("trust_reason") else ""
            cells.append(f"<td{css}{title}>{esc(text)}</td>")
        body.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    return f"<table class='compare'><thead><tr><th>guide</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _nested_rows(value: dict, prefix: str = ""):
    """(name, numbers) for each innermost dict of numbers: data set / model."""
    for name, inner in value.items():
        if isinstance(inner, dict) and any(isinstance(v, dict) for v in inner.values()):
            yield from _nested_rows(inner, f"{prefix}{name} / ")
        else:
            yield f"{prefix}{name}", inner


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{esc(k)}: {number(v)}" for k, v in value.items() if not isinstance(v, (list, dict)))
    return number(value)


def metric_block(record: dict) -> str:
    """The step's key numbers: compare tables for {guide: row} metrics, a key-value table for the rest."""
    metrics, parts, rows = record.get("metrics", {}), [], []
    for key in record["keys"]:
        if key not in metrics:
            continue
        value = metrics[key]
        if key in TABLE_KEYS and isinstance(value, dict):
            reference = metrics.get("reference")
            parts.append(compare_table(value, reference.get("row") if isinstance(reference, dict) else None))
        elif key == "reference" and isinstance(value, dict):
            rows.append(f"<tr><th>reference</th><td>{esc(value.get('kind', ''))} {esc(value.get('detail', ''))}"
                        "</td></tr>")
        elif isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            for name, numbers in _nested_rows(value):
                rows.append(f"<tr><th>{esc(key)}: {esc(name)}</th><td>{_plain(numbers)}</td></tr>")
        else:
            rows.append(f"<tr><th>{esc(key)}</th><td>{_plain(value)}</td></tr>")
    rows.append(f"<tr><th>seconds</th><td>{record.get('seconds', 0):.1f}</td></tr>")
    return "".join(parts) + "<table class='numbers'>" + "".join(rows) + "</table>"


def summary_list(results: list[dict]) -> str:
    items = []
    for r in results:
        claim = r.get("claim") or {}
        verdict = claim.get("holds")
        mark, css = ({True: ("yes", "holds"), False: ("no", "fails"), None: ("-", "unknown")}[verdict]
                     if r["status"] == "ok" else ("failed", "fails"))
        items.append(f"<li><a href='#{esc(r['name'])}'>{esc(r['name'])}</a>: {esc(claim.get('text', r['explain']))} "
                     f"<span class='{css}'>{mark}</span></li>")
    return "<ol class='summary'>" + "".join(items) + "</ol>"


def legend() -> str:
    bands = "".join(f"<li><span class='{css}'>&nbsp;{esc(css.split('-')[1])}&nbsp;</span> {esc(text)}</li>"
                    for _, css, text in KHAT_BANDS)
    notes = "".join(f"<li><b>{esc(header)}</b>: {esc(COLUMN_NOTES[key])}</li>" for key, header, _ in COLUMNS
                    if key in COLUMN_NOTES)
    return (f"<section id='legend'><h2>Reading the tables</h2><p>k-hat (Pareto smoothed importance sampling):</p>"
            f"<ul>{bands}</ul><p>Columns:</p><ul class='notes'>{notes}</ul></section>")


CHECK_IMAGES = """<script>
window.addEventListener('load', function () {
  var images = document.images, loaded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
    else { images[i].insertAdjacentHTML('afterend', '<p class="failed">figure not found: ' + images[i].alt + '</p>'); }
  }
  document.body.setAttribute('data-images-loaded', loaded + '/' + images.length);
});
</script>"""

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; color: #222; }
section { border-top: 1px solid #ccc; padding: 1em 0; }
figure { margin: 0.8em 0; } img { width: 100%; max-width: 900px; height: auto; border: 1px solid #eee; }
figcaption { font-size: 85%; color: #666; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 9px; font-size: 90%; }
td { text-align: right; } table.numbers td { text-align: left; } thead th { background: #f4f4f4; cursor: help; }
.khat-good { background: #d7f2d7; } .khat-ok { background: #fff1c2; } .khat-bad { background: #f7c9c9; }
.holds { color: #176617; font-weight: bold; } .fails { color: #b00; font-weight: bold; } .unknown { color: #777; }
.failed { color: #b00; font-weight: bold; } code { background: #f4f4f4; padding: 1px 4px; }
ol.summary li { margin: 0.2em 0; }
"""


def render_html(summary: dict) -> str:
    """The whole page of a tour's ``summary`` (its ``steps``: records with name, status, explain, keys, metrics,
    claim, seconds, command, figures)."""
    sections = []
    for i, r in enumerate(summary["steps"], start=1):
        status = "" if r["status"] == "ok" else (f"<p class='failed'>FAILED: {esc(r.get('error', ''))}</p>"
                                                  f"<pre>{esc(r.get('traceback', ''))}</pre>")
        claim = r.get("claim") or {}
        shown = (f"<p><b>Claim:</b> {esc(claim['text'])}: <span class='{'holds' if claim['holds'] else 'fails'}'>"
                 f"{'shown' if claim['holds'] else 'not shown'}</span></p>"
                 if claim.get("holds") is not None and r["status"] == "ok" else "")
        figures = "".join(f"<figure><img src='{esc(f)}' alt='{esc(f)}' loading='eager'>"
                          f"<figcaption>{esc(Path(f).name)}</figcaption></figure>" for f in r["figures"])
        sections.append(
            f"<section id='{esc(r['name'])}'><h2>{i}. {esc(r['name'])}</h2><p>{esc(r['explain'])}</p>{shown}{status}"
            f"{metric_block(r)}<p>Reproduce: <code>{esc(r['command'])}</code></p>{figures}</section>")
    ok = sum(r["status"] == "ok" for r in summary["steps"])
    shown = sum(bool((r.get("claim") or {}).get("holds")) and r["status"] == "ok" for r in summary["steps"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deepprob tour</title><style>{STYLE}</style></head><body>
<h1>deepprob: from conjugate regression to GANs</h1>
<p>{ok} of {len(summary['steps'])} steps ran; {shown} show what they claim. Seed {summary['seed']}, device
{esc(summary['device'])}, {'quick' if summary['quick'] else 'full'} settings. Every metric is in
<code>summary.json</code>; the tables' columns are explained <a href='#legend'>at the end</a>.</p>
<h2>Summary</h2>{summary_list(summary['steps'])}
{''.join(sections)}
{legend()}
{CHECK_IMAGES}
</body></html>
"""


# --- checking the page in a browser ---------------------------------------------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    """A headless-capable Chromium on PATH (Debian: ``apt-get install chromium``), or None."""
    import shutil

    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def _headless(browser: str, *flags: str, timeout: float = 120) -> str:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="deepprob-chromium-") as profile:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               f"--user-data-dir={profile}", "--allow-file-access-from-files",
                               "--virtual-time-budget=5000", *flags], capture_output=True, text=True,
                              timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{browser} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def images_loaded(page: str | Path, browser: str | None = None) -> tuple[int, int]:
    """(figures loaded, figures) of the page ``page`` as headless Chromium renders it (its check script's count)."""
    import re

    browser = browser or find_browser()
    dom = _headless(browser, "--dump-dom", Path(page).resolve().as_uri())
    found = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    if found is None:
        raise RuntimeError("the page's image check did not run (no data-images-loaded on its body)")
    return int(found.group(1)), int(found.group(2))


def screenshot(page: str | Path, png: str | Path, width: int = 1200, height: int = 2400,
               browser: str | None = None) -> Path:
    """A PNG of the top ``height`` pixels of ``page`` at ``width``, by headless Chromium."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    _headless(browser or find_browser(), f"--screenshot={png.resolve()}", f"--window-size={width},{height}",
              Path(page).resolve().as_uri())
    return png
