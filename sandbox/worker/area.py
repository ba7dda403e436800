"""The job area: where a job's files are written, and the wipe after every job.

Layout (root is /sandbox under bubblewrap, a private temp dir without):

    root/pytest.ini          empty ini, so pytest never looks further up
    root/job/solution.py     the untrusted solution
    root/job/test_solution.py
    /tmp, /dev/shm           private tmpfs under bubblewrap; wiped too

Interpreter directories mounted inside /tmp (a venv under /tmp) are read-only binds the wipe
must not touch: they are listed in `keep`, and the wipe walks around them.
"""

from __future__ import annotations

import os
import shutil
import stat


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
        self._job_dir_mode: int | None = None  # as first created; a job that changed it gets a new one

    def write_job(self, solution: str, test: str | None) -> None:
        write_text(self.solution_path, solution)
        if test is not None:
            write_text(self.test_path, test)

    def reset(self) -> None:
        """Empty everything a job could have written, then recreate the job directory."""
        places = [self.root]
        if self.private_tmp:
            places += ["/tmp", "/dev/shm"]
        for place in places:
            self._wipe_inside(place)
        os.makedirs(self.job_dir, exist_ok=True)
        if self._job_dir_mode is None:
            self._job_dir_mode = stat.S_IMODE(os.lstat(self.job_dir).st_mode)
        os.makedirs(self.tmp_dir, exist_ok=True)
        write_text(self.ini_path, "[pytest]\n")

    def _wipe_inside(self, place: str) -> None:
        if not os.path.isdir(place) or os.path.islink(place):
            return
        for name in os.listdir(place):
            path = os.path.join(place, name)
            if path in self.keep or (path == self.job_dir and self._empty_job_dir()):
                continue
            if any(k.startswith(path + "/") for k in self.keep) and os.path.isdir(path) and not os.path.islink(path):
                self._wipe_inside(path)  # a parent of a kept mount: wipe around it
                continue
            remove_tree(path)

    def _empty_job_dir(self) -> bool:
        """The usual case, cheaply: the job directory as created, holding only files. Unlink those, keep it.

        Anything else (a subdirectory, a changed mode, a symlink in its place) returns False, and
        the directory is removed whole and created again.
        """
        try:
            st = os.lstat(self.job_dir)
            if not stat.S_ISDIR(st.st_mode) or stat.S_IMODE(st.st_mode) != self._job_dir_mode:
                return False
            with os.scandir(self.job_dir) as it:
                entries = list(it)
            if any(e.is_dir(follow_symlinks=False) for e in entries):
                return False
            for e in entries:
                os.unlink(e.path)
            return True
        except OSError:
            return False


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def remove_tree(path: str) -> None:
    def make_writable_and_retry(func, p, _exc) -> None:  # noqa: ANN001
        parent = os.path.dirname(p)
        for target in (parent, p):
            try:
                os.chmod(target, stat.S_IRWXU)
            except OSError:
                pass
        func(p)

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, onerror=make_writable_and_retry)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
