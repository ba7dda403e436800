"""`report` draws a run as a self-contained page (checked in headless Chromium); `select` samples it."""

import os
import re
import shutil
import subprocess
from collections import Counter

import pytest

from tests.conftest import read_jsonl, run_cli

FIGURES = ("dataflow", "pass_at_k", "difficulty", "distributions", "failures", "timeline")


def test_the_report_of_the_demo_run_has_every_figure(demo_run, tmp_path):
    import matplotlib.image

    page = tmp_path / "r" / "report.html"
    r = run_cli("report", str(demo_run), "-o", str(page))
    assert r.returncode == 0, r.stderr
    assert "unfinished" not in r.stderr
    text = page.read_text()
    for name in FIGURES:
        png = tmp_path / "r" / f"report-{name}.png"
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 200 and image.shape[1] > 500, name
        assert (image[..., :3] < 0.9).any(), f"{name} is blank"
        assert re.search(rf'<img id="fig-{name}" alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{{1000,}}"', text)
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    assert "<th>verified</th><td>4</td>" in text and "<th>SFT-accepted</th><td>3</td>" in text


def test_an_unfinished_run_is_drawn_as_partial_and_an_empty_one_gets_a_clear_message(demo_run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(demo_run, partial)
    (partial / "manifest.json").unlink()  # as while it runs, or after a kill
    with open(partial / "verified.jsonl", "ab") as f:
        f.write(b'{"question_id": "torn", "subs')  # a row being written
    r = run_cli("report", str(partial))
    assert r.returncode == 0, r.stderr
    assert "the run is unfinished" in r.stderr
    assert "This run is unfinished" in (partial / "report" / "report.html").read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.json").write_text('{"fingerprint": {"stages": ["solutions"]}}')
    r = run_cli("report", str(empty))
    assert r.returncode == 2 and "has no finished questions yet: nothing to draw" in r.stderr
    r = run_cli("report", str(tmp_path / "missing"))
    assert r.returncode == 2 and "is not a directory" in r.stderr


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found is None:
        if os.environ.get("KODCODE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (KODCODE_REQUIRE_CHROMIUM is set) but not installed")
        pytest.skip("no chromium: `apt-get install chromium` to render the report in a browser (.ci/run does)")
    return found


def _render(chromium, page, shot):
    # --no-sandbox: CI runs as root; --disable-dev-shm-usage: containers often have a tiny /dev/shm.
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1000,4200", "--enable-logging=stderr", "--v=0",
                        f"file://{page}"], capture_output=True, text=True, timeout=120)
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return r, console


def test_the_report_renders_in_headless_chromium_without_console_errors(demo_run, tmp_path):
    import matplotlib.image

    chromium = _chromium()
    page = tmp_path / "report.html"
    assert run_cli("report", str(demo_run), "-o", str(page)).returncode == 0
    # The check can fail: a page that logs a console error is caught.
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><html><body><script>console.error('boom')</script></body></html>")
    _, console = _render(chromium, broken, tmp_path / "broken.png")
    assert any("boom" in line for line in console), "console messages are not being captured"
    r, console = _render(chromium, page, tmp_path / "shot.png")
    assert r.returncode == 0, r.stderr[-2000:]
    assert console == []
    shot = matplotlib.image.imread(tmp_path / "shot.png")[..., :3]
    # The figures were drawn: the data-flow bars' blue (#1f77b4) and the difficulty green (#4caf50).
    for rgb in ((0x1F, 0x77, 0xB4), (0x4C, 0xAF, 0x50)):
        target = [c / 255 for c in rgb]
        close = (abs(shot[..., 0] - target[0]) < 0.03) & (abs(shot[..., 1] - target[1]) < 0.03) & \
                (abs(shot[..., 2] - target[2]) < 0.03)
        assert close.sum() > 500, rgb


def test_select_keeps_each_stratum_its_share_and_is_repeatable(demo_run, tmp_path):
    out = tmp_path / "lite.jsonl"
    r = run_cli("select", str(demo_run), "--n", "2", "--seed", "3", "-o", str(out))
    assert r.returncode == 0, r.stderr
    first = [row["question_id"] for row in read_jsonl(out)]
    assert len(first) == 2 and len(set(first)) == 2
    assert run_cli("select", str(demo_run), "--n", "2", "--seed", "3", "-o", str(out)).returncode == 0
    assert [row["question_id"] for row in read_jsonl(out)] == first  # same seed, same rows
    assert (tmp_path / "lite.report.html").exists()
    # Filters; asking for more than there is selects all there is, and says so.
    r = run_cli("select", str(demo_run), "--n", "10", "--difficulty", "medium", "-o", str(out))
    assert r.returncode == 0 and "only 1 row matches; it was selected" in r.stderr
    assert Counter(row["gpt_difficulty"] for row in read_jsonl(out)) == {"medium": 1}
    r = run_cli("select", str(demo_run), "--n", "10", "--style", "complete", "-o", str(out))
    assert {row["style"] for row in read_jsonl(out)} == {"complete"}
    r = run_cli("select", str(demo_run), "--n", "1", "--difficulty", "fail", "-o", str(out))
    assert r.returncode == 2 and "--difficulty takes easy, medium, hard" in r.stderr


def test_select_allocates_by_largest_remainder(tmp_path):
    """Strata of 6, 3 and 1 rows, 5 wanted: shares 3, 1.5 and 0.5 get 3, 1 and 0, and the one row left
    goes to a largest remainder (b and c tie at 0.5; the tie goes to the later stratum name)."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"fingerprint": {"stages": ["solutions"]}}')
    rows = ([{"question_id": f"a{i}", "subset": "a", "gpt_difficulty": "easy"} for i in range(6)]
            + [{"question_id": f"b{i}", "subset": "b", "gpt_difficulty": "hard"} for i in range(3)]
            + [{"question_id": "c0", "subset": "c", "gpt_difficulty": "medium"}])
    (run / "verified.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from kodcode_async.report import select

    result = select(str(run), 5, str(tmp_path / "s.jsonl"), seed=0)
    assert result.strata == {"a/easy": (6, 3), "b/hard": (3, 1), "c/medium": (1, 1)}
    assert result.rows == 5 and len(read_jsonl(tmp_path / "s.jsonl")) == 5
