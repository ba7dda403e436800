"""Warm-up: everything a job would otherwise pay for, done once in the zygote before any job.

Imports (pytest, coverage; numpy when the first job that names it arrives), blocked imports,
pytest's configuration prepared for the fixed job path, coverage's path tables, inspect's module
cache, then gc.freeze() so the jobs' collections never walk the warm heap.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import inspect
import os
import re
import site
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from sandbox.protocol import RESULT_FD, WorkerOptions
from sandbox.worker.area import JobArea, write_text
from sandbox.worker.limits import address_space_in_use
from sandbox.worker.pytest_unsafe import Reporter, coverage_windows_plugin, warm_line_coverage


class BlockedImports:
    """Meta-path finder that makes chosen top-level packages unimportable in jobs.

    For emulating a reference test environment (say, one without scipy) on a machine that has more.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path=None, target=None):  # noqa: ANN001, ANN201
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@dataclass
class Warm:
    """What the jobs inherit from the zygote."""

    area: JobArea
    reporter: Reporter | None = None  # built by the pytest phase
    pytest_args: list[str] = field(default_factory=list)
    config: object = None  # a configured pytest Config, or None for the slow path (pytest.main per job)
    session: object = None  # its Session, started (pytest_sessionstart ran) in the zygote
    capman: object = None
    # fds pytest's configured plugins hold (fd -> "stderr" for copies of our stderr, else "keep"):
    # the job keeps them open instead of closing them, so a later open() cannot reuse their numbers.
    plugin_fds: dict = field(default_factory=dict)
    coverage: object = None
    coverage_windows: object = None
    baseline_vm: int = 0
    preloaded: list[str] = field(default_factory=list)
    # module -> pattern of its name as a word: imported before the first job whose code matches
    on_demand: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def pytest_ready(self) -> bool:
        """The pytest phase ran (at start-up, or before the first pytest job)."""
        return self.reporter is not None


def warm_up(options: WorkerOptions, area: JobArea) -> Warm:
    """Import, prepare and freeze. Library failures become warnings, never a dead worker.

    With `options.lazy_pytest` only the base is done here; the pytest phase (preloads, pytest's
    prepared session, coverage) runs before the first pytest job (`warm_pytest`), so a worker
    that only ever runs stdin programs keeps a small heap and forks faster.
    """
    warm = Warm(area=area)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    # Every job's files are new and run once: no .pyc for them (nor pytest's rewritten ones) to
    # write and then wipe.
    sys.dont_write_bytecode = True
    for d in options.site_dirs:
        site.addsitedir(d)
    if options.lazy_pytest:
        _block_imports(options)
        area.reset()
        _freeze(warm)
        return warm
    return warm_pytest(warm, options)


@contextlib.contextmanager
def _imports_outside(area: JobArea) -> Iterator[None]:
    """Imports by the zygote itself never look in the job area (jobs write there)."""
    root = os.path.realpath(area.root)
    saved = sys.path[:]
    sys.path[:] = [p for p in saved if p and not os.path.realpath(p).startswith(root)]
    try:
        yield
    finally:
        sys.path[:] = saved


def _block_imports(options: WorkerOptions) -> None:
    if options.blocked_imports and not any(isinstance(f, BlockedImports) for f in sys.meta_path):
        for name in list(sys.modules):
            if name.partition(".")[0] in options.blocked_imports:
                del sys.modules[name]
        sys.meta_path.insert(0, BlockedImports(options.blocked_imports))


def warm_pytest(warm: Warm, options: WorkerOptions) -> Warm:
    """The pytest phase: preloads, pytest configured with its session started, coverage warmed."""
    area = warm.area
    for name in options.preload:
        try:
            with _imports_outside(area):
                importlib.import_module(name)
            warm.preloaded.append(name)
        except Exception as e:  # noqa: BLE001 - a missing optional library is a warning
            warm.warnings.append(f"could not preload {name}: {type(e).__name__}: {e}")
    warm.reporter = Reporter()  # captures pytest's machinery as it is now (imports it)
    import doctest  # noqa: F401 - the job's guard names doctest's runner (guard_unsafe.install): import it once here
    if options.strict_compare:
        from sandbox.worker.strict_unsafe import install_strict_compare

        install_strict_compare()
    _block_imports(options)
    area.reset()
    # Freeze what the imports built, so the collections pytest runs during warm-up (five at
    # every unconfigure) only walk what is new; frozen again, with the rest, below.
    gc.collect()
    gc.freeze()
    _prepare_pytest(warm, options)
    # inspect.getmodule() realpath()s every module in sys.modules the first time a failure
    # is formatted (~40 ms with numpy and pandas loaded); pay it once here.
    inspect.getmodule(compile("0", "<warm-up>", "eval"))
    if warm.coverage is not None:
        # The first start() computes stdlib/third-party path tables for every module;
        # do it here, once. Nothing is measured: only solution.py is included.
        warm.coverage.start()
        warm.coverage.stop()
        try:
            warm_line_coverage(warm.coverage, area.solution_path)
        except Exception as e:  # noqa: BLE001 - then jobs pay for it, with the same results
            warm.warnings.append(f"coverage analysis not warmed: {type(e).__name__}: {e}")
    _freeze(warm)
    warm.on_demand = {name: re.compile(rf"\b{re.escape(name)}\b") for name in options.preload_on_demand
                      if name not in sys.modules and name.partition(".")[0] not in options.blocked_imports}
    return warm


def preload_for(warm: Warm, texts: list[str]) -> None:
    """Import the on-demand modules these job texts name, once, in the zygote (trusted code only).

    Runs between jobs, with the job area wiped, and imports with the area's directories off
    sys.path, so nothing a job wrote can stand in for the module. Then the same steps as the
    warm-up: inspect's module cache, coverage's path tables, the memory baseline, gc.freeze.
    """
    wanted = [name for name, pattern in warm.on_demand.items() if any(pattern.search(t) for t in texts if t)]
    if not wanted:
        return
    with _imports_outside(warm.area):
        for name in wanted:
            del warm.on_demand[name]
            try:
                importlib.import_module(name)
                warm.preloaded.append(name)
            except Exception:  # noqa: BLE001 - then the job imports it (and fails) as it would anyway
                pass
    inspect.getmodule(compile("0", "<warm-up>", "eval"))
    if warm.coverage is not None:
        warm.coverage.start()
        warm.coverage.stop()
    _freeze(warm)


def _freeze(warm: Warm) -> None:
    """End of every warm-up step. Objects that exist now are never collected or moved by the
    jobs' gc runs (pytest calls gc.collect() five times per session, which would otherwise walk
    the whole warm heap), and the jobs' memory limits count from the heap as it is now."""
    gc.collect()
    gc.freeze()
    warm.baseline_vm = address_space_in_use()


def pytest_args(area: JobArea, plugins: list[str]) -> list[str]:
    """The command line of a fresh `pytest` on the job area (the warm run and reruns share it)."""
    args = [area.test_path, "-q", "--tb=short", "-p", "no:cacheprovider", "--rootdir", area.job_dir,
            "-c", area.ini_path]
    for plugin in plugins:
        args += ["-p", plugin]
    return args


WARM_UP_TEST = """\
import pytest
from solution import *


@pytest.fixture
def value():
    return double(2)


@pytest.mark.parametrize("x,want", [(1, 2), (2, 4)])
def test_parametrized(x, want):
    assert double(x) == want


class TestClass:
    def test_fixture(self, value, capsys, monkeypatch):
        print(value)
        assert capsys.readouterr().out == "4\\n"

    def test_raises(self):
        with pytest.raises(ZeroDivisionError):
            1 / 0


def test_failure_formatting():
    assert double(3) == {"a": [1, 2, 3]}


@pytest.mark.skip(reason="warm-up")
def test_skipped():
    pass
"""


def _prepare_pytest(warm: Warm, options: WorkerOptions) -> None:
    """Configure pytest and start its session once; each job then only collects, runs and finishes.

    Per job, a fresh pytest spends most of its time before the first test: registering and
    configuring ~40 plugins, building the fixture manager, first-time imports and regex and
    fnmatch compiles. Jobs are forks of this process, so all of that is done here once: a
    throw-away session warms the imports and caches, then the real config is configured and its
    session started. What remains per job is exactly the part of pytest's wrap_session after
    pytest_sessionstart (see pytest_internals.finish_session).
    """
    import pytest  # noqa: F401 - imported for its side effects in the warm heap

    from sandbox.worker import pytest_internals, pytest_speedups

    fast = options.pytest_fast_path
    if fast and (problem := pytest_internals.fast_path_problem()):
        warm.warnings.append(problem)
        fast = False
    if fast:
        # Inside the checked versions, a speed-up that does not apply (its target differs in this
        # version: pytest_speedups checks each) leaves pytest's own code, which gives the same results.
        pytest_speedups.install()
    area = warm.area
    warm.pytest_args = pytest_args(area, options.pytest_plugins)
    try:
        import coverage

        warm.coverage = coverage.Coverage(data_file=None, include=[area.solution_path], config_file=False)
        # A solution that never gets imported is reported as coverage None, not as a warning.
        warm.coverage.set_option("run:disable_warnings", ["no-data-collected", "module-not-imported",
                                                          "module-not-measured"])
    except Exception as e:  # noqa: BLE001
        warm.warnings.append(f"coverage unavailable: {e}")
    os.chdir(area.job_dir)
    try:
        _throwaway_session(warm, windows=fast)
        if fast:
            _start_session(warm)
    except Exception as e:  # noqa: BLE001 - fall back to a full pytest.main per job
        warm.config = warm.session = warm.capman = None
        warm.warnings.append(f"pre-started pytest session unavailable ({type(e).__name__}: {e}); "
                             "running pytest.main per job, which is slower")
    finally:
        os.chdir(area.root)
        area.reset()


def _throwaway_session(warm: Warm, windows: bool) -> None:
    """Run one real session in this process, for the imports and caches it leaves behind.

    On the fast path (`windows`) it runs with coverage on in the same windows as a job, which
    fills coverage's per-file "trace this file?" cache for every file pytest's machinery executes
    there (jobs start with it instead of asking coverage's Python-level check again for each file,
    ~5 ms per job); the job paths are fixed, so the decisions hold for every job. The lines it
    recorded are dropped.
    """
    import linecache

    import pytest

    area = warm.area
    write_text(area.solution_path, "def double(x):\n    return 2 * x\n")
    write_text(area.test_path, WARM_UP_TEST)
    plugin = None
    collector = getattr(warm.coverage, "_collector", None) if warm.coverage is not None else None
    if windows and collector is not None and isinstance(getattr(collector, "data", None), dict):
        plugin = coverage_windows_plugin()
        plugin.cov = warm.coverage
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)  # its report is of no interest
    try:
        pytest.main(list(warm.pytest_args), plugins=[plugin] if plugin is not None else [])
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    if plugin is not None:
        collector.data.clear()  # keep the dict the tracers share; forget the warm-up's lines
        if collector.data:
            raise RuntimeError("coverage data could not be cleared after warm-up")
    for name in ("solution", "test_solution", "conftest"):
        sys.modules.pop(name, None)
    linecache.clearcache()  # jobs reuse these file names: no stale source lines
    area.reset()
    os.chdir(area.job_dir)  # the reset made a new one


def _open_fds() -> set[int]:
    """Open fds of this process (the listing's own fd, closed by now, is left out)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(name))
        except OSError:
            continue
        out.add(int(name))
    return out


def _start_session(warm: Warm) -> None:
    from sandbox.worker import pytest_internals as internals

    area = warm.area
    write_text(area.test_path, "def test_placeholder():\n    pass\n")
    before = _open_fds()
    for fd in range(RESULT_FD + 1):  # plugins must not take the numbers a job's std fds get
        if fd not in before:
            os.dup2(os.open(os.devnull, os.O_RDONLY), fd)
            before.add(fd)
    warm.coverage_windows = coverage_windows_plugin()
    config = internals.prepare_config(list(warm.pytest_args), plugins=[warm.reporter, warm.coverage_windows])
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        # Capture started while parsing; each job starts its own on fresh temp files.
        capman.stop_global_capturing()
    session = internals.start_session(config)
    stderr = os.fstat(2)
    for fd in _open_fds() - before:
        st = os.fstat(fd)
        same_as_stderr = (st.st_dev, st.st_ino) == (stderr.st_dev, stderr.st_ino)
        warm.plugin_fds[fd] = "stderr" if same_as_stderr else "keep"
    warm.config, warm.session, warm.capman = config, session, capman
