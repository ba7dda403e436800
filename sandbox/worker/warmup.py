"""Warm-up: everything a job would otherwise pay for, done once in the zygote before any job.

Imports (pytest, coverage, numpy, pandas), blocked imports, pytest's configuration prepared for
the fixed job path, coverage's path tables, inspect's module cache, then gc.freeze() so the
jobs' collections never walk the warm heap.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
import site
import sys
from dataclasses import dataclass, field

from sandbox.protocol import WorkerOptions
from sandbox.worker.area import JobArea, write_text
from sandbox.worker.limits import address_space_in_use
from sandbox.worker.pytest_unsafe import Reporter, coverage_windows_plugin


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
    reporter: Reporter = field(default_factory=Reporter)
    pytest_args: list[str] = field(default_factory=list)
    config: object = None  # a prepared pytest Config, or None for the slow path (pytest.main per job)
    capman: object = None
    coverage: object = None
    coverage_windows: object = None
    baseline_vm: int = 0
    preloaded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def warm_up(options: WorkerOptions, area: JobArea) -> Warm:
    """Import, prepare and freeze. Library failures become warnings, never a dead worker."""
    warm = Warm(area=area)
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for d in options.site_dirs:
        site.addsitedir(d)
    for name in options.preload:
        try:
            importlib.import_module(name)
            warm.preloaded.append(name)
        except Exception as e:  # noqa: BLE001 - a missing optional library is a warning
            warm.warnings.append(f"could not preload {name}: {type(e).__name__}: {e}")
    if options.blocked_imports:
        for name in list(sys.modules):
            if name.partition(".")[0] in options.blocked_imports:
                del sys.modules[name]
        sys.meta_path.insert(0, BlockedImports(options.blocked_imports))
    area.reset()
    _prepare_pytest(warm, options)
    # inspect.getmodule() realpath()s every module in sys.modules the first time a failure
    # is formatted (~40 ms with numpy and pandas loaded); pay it once here.
    inspect.getmodule(compile("0", "<warm-up>", "eval"))
    if warm.coverage is not None:
        # The first start() computes stdlib/third-party path tables for every module;
        # do it here, once. Nothing is measured: only solution.py is included.
        warm.coverage.start()
        warm.coverage.stop()
    gc.collect()
    # Objects that exist now are never collected or moved by the job's gc runs; pytest
    # calls gc.collect() five times per session, which otherwise walks the whole warm heap.
    gc.freeze()
    warm.baseline_vm = address_space_in_use()
    return warm


def pytest_args(area: JobArea, plugins: list[str]) -> list[str]:
    """The command line of a fresh `pytest` on the job area (the warm run and reruns share it)."""
    args = [area.test_path, "-q", "--tb=short", "-p", "no:cacheprovider", "--rootdir", area.job_dir,
            "-c", area.ini_path]
    for plugin in plugins:
        args += ["-p", plugin]
    return args


def _prepare_pytest(warm: Warm, options: WorkerOptions) -> None:
    import pytest  # noqa: F401 - imported for its side effects in the warm heap

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
    try:
        from _pytest.config import _prepareconfig

        write_text(area.test_path, "def test_placeholder():\n    pass\n")
        os.chdir(area.job_dir)
        warm.coverage_windows = coverage_windows_plugin()
        config = _prepareconfig(list(warm.pytest_args), plugins=[warm.reporter, warm.coverage_windows])
        capman = config.pluginmanager.getplugin("capturemanager")
        if capman is not None:
            # Capture started while parsing; each job starts its own on fresh temp files.
            capman.stop_global_capturing()
        warm.config, warm.capman = config, capman
    except Exception as e:  # noqa: BLE001 - fall back to a full pytest.main per job
        warm.warnings.append(f"prepared pytest config unavailable ({type(e).__name__}: {e}); "
                             "running pytest.main per job, which is slower")
    finally:
        os.chdir(area.root)
        area.reset()
