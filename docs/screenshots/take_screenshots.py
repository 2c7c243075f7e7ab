"""Screenshots of each lesson's widget in a real JupyterLab, driven by headless Chromium (how they were made).

Not part of the test suite. Needs Debian's chromium (`apt-get install -y chromium`) and Python `playwright` in a
separate venv (`python3 -m venv /tmp/pw && /tmp/pw/bin/pip install playwright`; never `playwright install`: the
system chromium is used through `executable_path`). Then, from the checkout:

    .venv/bin/python docs/screenshots/take_screenshots.py prepare /tmp/shots      # lesson copies, interactive=True
    .venv/bin/jupyter lab --no-browser --port 8899 --ServerApp.token= --ServerApp.root_dir=/tmp/shots &
    /tmp/pw/bin/python docs/screenshots/take_screenshots.py shoot /tmp/shots docs/screenshots

`prepare` writes copies of the four lessons with small parameters and `interactive = True`; `shoot` opens each in
JupyterLab, runs all cells, waits for the widget and saves its cell as `<lesson>_widget.png`, and the cell of the
lesson's key figure (`KEY_FIGURES`) as `<lesson>_figure.png`, as a student sees them at JupyterLab's default zoom.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {   # parameter -> value (source text) for each copy; small enough for a 2-core CPU
    "01_clip_basics": {},
    "02_text_rewriting": {"n_captions": "24", "embed": "False"},
    "03_laclip_training": {"preset": "'test'", "steps": "150", "jobs": "1"},
    "04_ablations": {"preset": "'test'", "steps": "20", "overrides": "[]", "jobs": "1"},
}
KEY_FIGURES = {   # lesson -> the call whose cell holds its key figure
    "01_clip_basics": "lesson01.zero_shot_figures(",
    "02_text_rewriting": "lesson02.quality_lesson(",
    "03_laclip_training": "lesson03.similarity_by_policy(",
    "04_ablations": "lesson04.ablation_figures(",
}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def prepare(folder: Path) -> None:
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    for name, values in SETTINGS.items():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        values = {**values, "interactive": "True", "out_dir": repr(str(folder / "out" / name))}
        lines = []
        for line in cell.source.split("\n"):
            m = re.match(r"^(\w+)(: [^=]+)? = ", line)
            lines.append(f"{m.group(1)}{m.group(2) or ''} = {values[m.group(1)]}" if m and m.group(1) in values
                         else line)
        cell.source = "\n".join(lines)
        nbformat.write(nb, folder / f"{name}.ipynb")


def shoot(out: Path, names: list[str], base: str = "http://127.0.0.1:8899/lab/tree/") -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
        for name in names:
            page = browser.new_page(viewport={"width": 1440, "height": 1400})   # a common laptop window
            page.goto(base + f"{name}.ipynb?reset", wait_until="domcontentloaded")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            time.sleep(5)                                   # the kernel starts
            news = page.locator(".jp-Notification-Toast button", has_text="No")   # JupyterLab's news prompt
            if news.count():
                news.first.click()
            page.locator(".jp-Notebook:visible").first.click()
            page.keyboard.press("Escape")
            page.click("text=Run", timeout=30_000)          # Run > Run All Cells
            page.click("text=Run All Cells", timeout=30_000)
            page.locator(".jp-Notebook:visible .jp-OutputArea-output .widget-vbox").last.wait_for(
                state="visible", timeout=1_200_000)
            time.sleep(8)                                   # the widget draws its first view
            cell = page.locator(".jp-Notebook:visible .jp-Cell", has=page.locator(".widget-vbox")).last
            cell.scroll_into_view_if_needed()
            time.sleep(2)
            cell.screenshot(path=str(out / f"{name}_widget.png"))
            print("wrote", out / f"{name}_widget.png", flush=True)
            key = page.locator(".jp-Notebook:visible .jp-Cell", has_text=KEY_FIGURES[name]).last
            key.scroll_into_view_if_needed()
            time.sleep(2)
            key.screenshot(path=str(out / f"{name}_figure.png"))
            print("wrote", out / f"{name}_figure.png", flush=True)
            page.close()
        browser.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        prepare(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["shoot"]:
        shoot(Path(sys.argv[3]), sys.argv[4:] or list(SETTINGS))
    else:
        raise SystemExit(__doc__)
