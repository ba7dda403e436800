"""The job area: where a job's files are written, and (without namespaces) the wipe after every job.

Layout (root is /sandbox under bubblewrap, a private temp dir without):

    root/pytest.ini          empty ini, so pytest never looks further up
    root/job/solution.py     the untrusted solution
    root/job/test_solution.py
    /tmp, /dev/shm           under bubblewrap: directories of the same private tmpfs

Under bubblewrap every job mounts a fresh tmpfs at root (job_unsafe.private_area), so what it
writes vanishes with its mount namespace and the next job starts from an empty area: nothing is
wiped. Without isolation (asked for by name) the area is a shared directory that the supervisor
wipes after each job; that wipe must not fail on anything a job can make (deep trees, modes that
deny access, FIFOs, sockets, symlinks), and when it does anyway the worker retires.
"""

from __future__ import annotations

import os

from sandbox.tree import remove_tree


class JobArea:
    def __init__(self, root: str, private_tmp: bool, keep: list[str] = ()) -> None:  # type: ignore[assignment]
        self.root = root
        self.job_dir = os.path.join(root, "job")
        self.private_tmp = private_tmp
        self.tmp_dir = "/tmp" if private_tmp else os.path.join(root, "tmp")
        self.keep = frozenset(os.path.normpath(k) for k in keep)
        self.solution_path = os.path.join(self.job_dir, "solution.py")
        self.test_path = os.path.join(self.job_dir, "test_solution.py")
        self.ini_path = os.path.join(root, "pytest.ini")

    def prepare(self) -> None:
        """The job directory, the temp directory and the ini file (an empty area becomes a usable one)."""
        os.makedirs(self.job_dir, exist_ok=True)
        os.makedirs(self.tmp_dir, exist_ok=True)
        write_text(self.ini_path, "[pytest]\n")

    def write_job(self, solution: str, test: str | None) -> None:
        write_text(self.solution_path, solution)
        if test is not None:
            write_text(self.test_path, test)

    def reset(self) -> bool:
        """Empty everything a job could have written, then make the area usable again.

        Returns False when something could not be removed (the caller retires the worker).
        """
        places = [self.root]
        if self.private_tmp:
            places += ["/tmp", "/dev/shm"]
        clean = True
        for place in places:
            clean &= self._wipe_inside(place)
        try:
            self.prepare()
        except OSError:
            return False
        return clean

    def _wipe_inside(self, place: str) -> bool:
        try:
            names = os.listdir(place)
        except OSError:
            return not os.path.lexists(place)
        clean = True
        for name in names:
            path = os.path.join(place, name)
            if path in self.keep:
                continue
            if any(k.startswith(path + "/") for k in self.keep) and os.path.isdir(path) and not os.path.islink(path):
                clean &= self._wipe_inside(path)  # a parent of a kept mount: wipe around it
                continue
            clean &= remove_tree(path)
        return clean


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
