"""The report as a person sees it: the HTML in headless Chromium, the PDF's first pages as images (slow: it
installs nothing itself; ``./run slow`` installs Debian's chromium first)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _png_colours(path: Path) -> int:
    """How many distinct colours a PNG holds (a blank or failed render holds one or two)."""
    import matplotlib.image as mpimg
    import numpy as np

    pixels = (mpimg.imread(str(path))[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


def test_report_renders_in_a_browser_and_as_pdf_pages(project: pytest.Pytester, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: ./run slow installs it (apt-get install chromium)")
    result = project.runpytest(
        "suites/bulk_load", "--cp-target=embedded-postgresql", "--cp-scale=0.001", "--cp-formats=html,pdf,docx"
    )
    assert result.ret == 0, result.stdout.str()[-2000:]
    folder = project.path / "results" / "latest"
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1300,1600",
            f"--screenshot={shot}",
            (folder / "report.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000 and _png_colours(shot) > 50
    subprocess.run(
        ["pdftoppm", "-r", "50", "-png", "-f", "1", "-l", "2", str(folder / "report.pdf"), str(tmp_path / "page")],
        check=True,
        timeout=120,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2 and all(_png_colours(p) > 20 for p in pages)
