"""sandbox/worker/pytest_speedups.py: each cheaper pytest internal gives exactly what pytest's own gives.

Every check runs in a fresh interpreter (tests/speedups_check.py says why).
"""

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.speedups_check import CHECKS


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_speedup_matches_pytest(check):
    out = subprocess.run([sys.executable, "-m", "tests.speedups_check", check], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
