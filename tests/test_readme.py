"""Every Python snippet in the README runs as written (from a directory holding the examples)."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(index, tmp_path, isolated):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", SNIPPETS[index]], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, f"README snippet {index + 1} failed:\n{SNIPPETS[index]}\n{r.stderr[-3000:]}"
    assert r.stdout.strip(), "a snippet prints what it shows"
