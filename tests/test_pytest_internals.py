"""pytest's private names live in one module (sandbox/worker/pytest_internals.py), which knows the
versions they were checked on; outside those, or when asked (`pytest_fast_path=False`), a worker
runs `pytest.main` per job with none of the patches, and its verdicts must be the same: the
reference's labels on real KodCode trials, and no forged pass."""

import ast
from pathlib import Path

import pytest

from sandbox import Job, Limits, SandboxConfig, verify_batch
from sandbox.verdict import reference_label
from sandbox.worker import pytest_internals
from tests.conftest import DATA, ROOT, read_jsonl
from tests.test_red_team import FORGERIES, LIMITS, SOL, TESTS, wrong


def private_pytest_uses(path: Path) -> list[str]:
    """Imports of _pytest and string constants naming it, in one source file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno}" for a in node.names if a.name.split(".")[0] == "_pytest"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "_pytest":
            found.append(f"{path.name}:{node.lineno}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_pytest."):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_pytest_s_private_modules_are_named_in_one_module_only() -> None:
    sources = sorted((ROOT / "sandbox").rglob("*.py")) + sorted((ROOT / "kodcode_async").rglob("*.py"))
    outside = [use for p in sources if p.name != "pytest_internals.py" for use in private_pytest_uses(p)]
    assert outside == []
    assert private_pytest_uses(ROOT / "sandbox" / "worker" / "pytest_internals.py")  # the scan sees them there


def test_the_fast_path_runs_only_on_the_pytest_versions_it_was_checked_on() -> None:
    assert pytest_internals.version("8.0.2") == (8, 0)
    assert pytest_internals.version("9.2.0.dev12+g3f2a") == (9, 2)
    assert pytest_internals.version("9.1rc1") == (9, 1)
    for inside in ("8.0.0", "8.4.2", "9.0.3", "9.2.0", "9.2.7"):
        assert pytest_internals.fast_path_problem(inside) == "", inside
    for outside, short in (("7.4.4", "7.4"), ("9.3.0", "9.3"), ("10.0.0rc1", "10.0")):
        problem = pytest_internals.fast_path_problem(outside)
        want = f"pytest {short} is outside the versions the sandbox's fast path was checked on (8.0 to 9.2)"
        assert problem.startswith(want) and "pytest.main per job" in problem, problem
    assert pytest_internals.fast_path_problem("nightly").startswith("pytest's version cannot be read")
    assert pytest_internals.fast_path_problem() == ""  # the pytest this suite runs on is one of them


@pytest.fixture(scope="module")
def plain(isolated):
    """Real trials (every reference pass and every fifth fail; the timeouts would only cost their
    limit) and the red-team forgeries, on the plain path."""
    rows = read_jsonl(DATA / "kodcode_algorithm_trials.jsonl")
    fails = [r for r in rows if r["verdict_reference"] == "Fail"]
    rows = [r for r in rows if r["verdict_reference"] == "Pass"] + fails[::5]
    jobs = [Job(id=r["id"], solution=r["solution"], test=r["test"], limits=Limits(wall_s=60, cpu_s=15, memory_mb=0))
            for r in rows]
    jobs += [Job(id=name, solution=wrong(body), test=TESTS, limits=LIMITS) for name, body in FORGERIES.items()]
    jobs.append(Job(id="honest", solution=SOL, test=TESTS, limits=LIMITS))
    config = SandboxConfig(workers=2, blocked_imports=("scipy", "sympy"), pytest_fast_path=False)
    verdicts = {v.id: v for v in verify_batch(jobs, config)}
    return rows, verdicts


def test_the_plain_path_gives_the_reference_s_labels_and_coverage_on_real_trials(plain) -> None:
    rows, verdicts = plain
    assert len(rows) == 24 + 51
    wrong_labels = [(r["id"], r["verdict_reference"], verdicts[r["id"]].status, verdicts[r["id"]].reason)
                    for r in rows if reference_label(verdicts[r["id"]]) != r["verdict_reference"]]
    assert wrong_labels == []
    for r in rows:
        if r["verdict_reference"] == "Pass" and r["coverage_reference"]:
            assert abs(verdicts[r["id"]].coverage - float(r["coverage_reference"].rstrip("%"))) <= 1, r["id"]


def test_the_plain_path_keeps_every_check_against_a_forged_pass(plain) -> None:
    _, verdicts = plain
    forged = {name: (verdicts[name].status, verdicts[name].reason[:80]) for name in FORGERIES}
    assert [name for name, (status, _) in forged.items() if status in ("pass", "sandbox_error")] == [], forged
    assert verdicts["honest"].status == "pass", verdicts["honest"].reason


def test_the_project_allows_the_oldest_checked_pytest_and_tests_on_the_newest() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    oldest, newest = pytest_internals.OLDEST, pytest_internals.NEWEST
    assert f"pytest>={oldest[0]},<10" in project["dependencies"] and oldest[1] == 0  # 8 means 8.0
    assert f"pytest<{newest[0]}.{newest[1] + 1}" in project["optional-dependencies"]["test"]
