"""A disk that fills up: a size-capped tmpfs mounted in the test's own user and mount namespace.

`unshare --user --map-root-user --mount` gives the commands a private mount table where they may
mount a small tmpfs, as root or as an ordinary user; nothing outside sees it. Each command runs
the CLI as a user does, into that tmpfs, then grows it (`remount,size=`) and runs the same command
again. The code under test is the project's: the journal, the writers, the CLI's one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, read_jsonl

PAD = "# " + "x" * 76 + "\n"  # real KodCode answers are 2-9 KB: rows and journal records fill the disk fast


def _namespace_works() -> str:
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True)
    return "" if r.returncode == 0 else f"unshare --user --mount: {r.stderr.strip()}"


pytestmark = pytest.mark.skipif(bool(_namespace_works()), reason=_namespace_works() or "-")


def _questions(tmp_path, n=30):
    q, rec = tmp_path / "q.jsonl", tmp_path / "rec.jsonl"
    with open(q, "w") as fq, open(rec, "w") as fr:
        for i in range(n):
            fq.write(json.dumps({"question_id": f"d{i:03d}", "question": f"Write add{i}(a, b) returning a + b + {i}."})
                     + "\n")
            sol = PAD * 25 + f"def add{i}(a, b):\n    return a + b + {i}\n"
            test = f"from solution import add{i}\n\ndef test_add():\n    assert add{i}(1, 2) == {3 + i}\n"
            resp = (f"<|Solution Begin|>\n```python\n{sol}```\n<|Solution End|>\n<|Test Begin|>\n```python\n{test}"
                    "```\n<|Test End|>")
            fr.write(json.dumps({"stage": "solutions", "item_id": f"d{i:03d}", "attempt": 0, "response": resp}) + "\n")
    return q, rec


def _in_a_small_tmpfs(mount, size: str, steps: list[str], before: tuple[str, ...] = ()) -> list[dict]:
    """Runs the shell steps inside one private namespace where `mount` is a tmpfs of `size` (the
    `before` commands run first, before it is mounted). A step "GROW" grows it to 16 MB; a step
    starting with "!" runs unrecorded (copying results out). Returns each recorded step's exit
    code and output."""
    script = ["set -eu", *before, f"mount -t tmpfs -o size={size} tmpfs {mount}", "set +e"]
    recorded = []
    for k, step in enumerate(steps):
        if step == "GROW":
            script.append(f"mount -o remount,size=16m {mount}")
        elif step.startswith("!"):
            script.append(step[1:])
        else:
            script.append(f"( {step} ) > {mount}.out{k} 2> {mount}.err{k}; echo $? > {mount}.rc{k}")
            recorded.append(k)
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", "\n".join(script)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    def read(name: str, k: int) -> str:
        with open(f"{mount}.{name}{k}") as f:
            return f.read()

    return [{"rc": int(read("rc", k)), "stdout": read("out", k), "stderr": read("err", k)} for k in recorded]


def _copy_out(mount, name) -> str:
    return f"!rm -rf {name} && cp -a {mount}/run {name}"


def test_a_run_that_fills_the_disk_stops_in_one_line_and_resumes_to_exact_rows(tmp_path):
    q, rec = _questions(tmp_path)
    run = [sys.executable, "-m", "kodcode_async", "run", "--input", str(q), "--recorded", str(rec), "--attempts", "1",
           "--max-attempts", "1", "--isolation", "none", "--quiet"]
    reference = subprocess.run([*run, "--out", str(tmp_path / "ref")], cwd=ROOT, capture_output=True, text=True,
                               timeout=300)
    assert reference.returncode == 0, reference.stderr
    mount = tmp_path / "disk"
    mount.mkdir()
    command = " ".join([*run, "--out", f"{mount}/run"])
    # 300 KB: the journal and the first rows fit, the rest do not (the whole run needs ~0.4 MB).
    first, second = _in_a_small_tmpfs(mount, "300k", [
        command, _copy_out(mount, tmp_path / "full"), "GROW", command, _copy_out(mount, tmp_path / "after")])
    errors = [line for line in first["stderr"].splitlines() if line.startswith("error")]
    assert first["rc"] == 1 and "Traceback" not in first["stderr"], first["stderr"]
    assert len(errors) == 1 and "No space left on device" in errors[0], first["stderr"]
    assert f"{mount}/run/" in errors[0] and "MB free there" in errors[0]
    assert "free space and run the same command again to resume" in errors[0]
    partial = (tmp_path / "full" / "verified.jsonl")
    assert partial.exists() and 0 < len(partial.read_bytes().splitlines()) < 30  # it stopped mid-run
    assert second["rc"] == 0, second["stderr"]
    ours = {r["question_id"]: r for r in read_jsonl(tmp_path / "after" / "verified.jsonl")}
    ref = {r["question_id"]: r for r in read_jsonl(tmp_path / "ref" / "verified.jsonl")}
    assert len(read_jsonl(tmp_path / "after" / "verified.jsonl")) == 30  # none twice, none torn

    def same(row):
        return {k: v for k, v in row.items() if k != "metadata"}

    assert {k: same(v) for k, v in ours.items()} == {k: same(v) for k, v in ref.items()}


def test_verify_and_export_onto_a_full_disk_say_so_in_one_line_and_leave_no_partial_file(tmp_path, demo_run):
    trials = tmp_path / "trials.jsonl"
    trials.write_text("".join(json.dumps({"id": f"t{i}", "solution": PAD * 400 + "x = 1\n",
                                          "test": "def test_a():\n    assert True\n"}) + "\n" for i in range(6)))
    mount = tmp_path / "disk"
    mount.mkdir()
    verify = f"{sys.executable} -m kodcode_async verify {trials} -o {mount}/v.jsonl --workers 1 --isolation none"
    export = f"{sys.executable} -m kodcode_async export {demo_run} -o {mount}/d.jsonl --format jsonl"
    # 8 KB: a few verdict rows fit; the exported dataset does not.
    v, e = _in_a_small_tmpfs(mount, "8k", [
        f"!head -c 6000 /dev/zero > {mount}/filler", verify, f"!rm {mount}/filler {mount}/v.jsonl", export,
        f"!ls -a {mount} > {tmp_path}/after-export"])
    for r in (v, e):
        lines = [x for x in r["stderr"].splitlines() if x.startswith("error")]
        assert r["rc"] in (1, 2) and "Traceback" not in r["stderr"], r["stderr"]
        assert len(lines) == 1 and "No space left on device" in lines[0], r["stderr"]
    assert "the verdicts finished so far are in" in v["stderr"]
    assert (tmp_path / "after-export").read_text().split() == [".", ".."]  # no d.jsonl, no d.jsonl.tmp
