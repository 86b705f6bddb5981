"""The study report on a small real study: leaderboard, findings, figures, a self-contained HTML page, rebuild."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mnistbench.cli import main

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def study(small_study: Path) -> Path:
    """The session's small real study (conftest.small_study): cnn and vit, two seeds each."""
    return small_study


def test_report_has_leaderboard_with_spread_findings_and_figures(study):
    md = (study / "report.md").read_text()
    assert "Preset **quick**" in md and "sliced" in md
    assert "## What this run shows" in md and "most accurate" in md
    board = md.split("## Leaderboard")[1].split("\n\n")[1].splitlines()
    assert board[0].startswith("| # | model |") and len(board) == 2 + 2
    assert all("±" in line and "2/2" in line for line in board[2:])
    accuracies = [float(line.split("|")[4].split("±")[0]) for line in board[2:]]
    assert accuracies == sorted(accuracies, reverse=True)
    for link in re.findall(r"\]\((figures/[^)]+)\)", md):
        assert (study / link).read_bytes()[:4] == b"\x89PNG", link
    assert {"figures/curves.png", "figures/pareto.png", "figures/confusions.png", "figures/per_class_f1.png",
            "figures/mistakes.png"} <= set(re.findall(r"\]\((figures/[^)]+)\)", md))


def test_report_html_is_self_contained(study):
    page = (study / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert len(srcs) >= 5 and all(s.startswith("data:image/png;base64,") for s in srcs)


def _images_loaded(page: Path, tmp: Path) -> tuple[int, int]:
    """(images, images that failed to load) of `page` rendered in headless Chromium."""
    probe = ("<script>window.addEventListener('load',()=>{const im=[...document.images];"
             "document.body.setAttribute('data-check',im.length+'/'+"
             "im.filter(i=>!i.complete||i.naturalWidth===0).length);});</script>")
    checked = tmp / f"checked-{page.name}"
    checked.write_text(page.read_text().replace("</body>", probe + "</body>"))
    proc = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={tmp / 'chromium-profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'data-check="(\d+)/(\d+)"', proc.stdout)
    assert found, f"no result from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return int(found[1]), int(found[2])


@pytest.mark.skipif(not CHROMIUM.exists() and os.environ.get("CI") != "true",
                    reason="needs /usr/bin/chromium (apt-get install chromium); required when CI=true")
def test_report_html_images_all_load_in_chromium(study, tmp_path):
    assert CHROMIUM.exists(), "CI=true but /usr/bin/chromium is missing: apt-get install chromium"
    total, broken = _images_loaded(study / "report.html", tmp_path)
    assert total >= 5 and broken == 0
    # the probe itself must see a broken image
    bad = tmp_path / "bad.html"
    bad.write_text((study / "report.html").read_text().replace("</body>", '<img src="data:image/png;base64,AAAA">'
                                                                          "</body>"))
    assert _images_loaded(bad, tmp_path) == (total + 1, 1)


def test_report_command_rebuilds_identical_tables(study, capsys):
    before = {name: (study / name).read_bytes() for name in ("results.csv", "results.json", "report.md")}
    os.utime(study / "results.csv", (0, 0))
    assert main(["report", str(study)]) == 0
    assert "4 of 4 runs finished" in capsys.readouterr().out
    assert (study / "results.csv").stat().st_mtime > 0  # really rewritten
    for name, data in before.items():
        assert (study / name).read_bytes() == data, name


def test_report_of_a_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a folder" in capsys.readouterr().err
