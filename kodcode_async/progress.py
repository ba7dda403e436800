"""Progress display: a rich live view on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """Call `update()` as often as you like; it redraws at most every `interval` seconds."""

    def __init__(self, title: str, total: int | None = None, interval: float = 5.0,
                 render: Callable[[], str] | None = None, stream=None, enabled: bool = True) -> None:  # noqa: ANN001
        self.enabled = enabled
        self.title = title
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.interval = 0.2 if self.tty else interval
        self.render = render
        self.start = time.monotonic()
        self._last = 0.0
        self._live = None
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.stream), refresh_per_second=5, transient=False)
            self._live.start()

    def text(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.title}: {self.done}" + (f"/{self.total}" if self.total else ""), f"{rate:.1f}/s"]
        if self.total and self.tty:
            filled = int(20 * min(1.0, self.done / self.total))
            parts.insert(0, "[" + "#" * filled + "-" * (20 - filled) + "]")
        if self.total and rate > 0:
            parts.append(f"ETA {max(0.0, (self.total - self.done) / rate):.0f}s")
        if self.render is not None:
            parts.append(self.render())
        return "  ".join(parts)

    def update(self, advance: int = 0, force: bool = False) -> None:
        self.done += advance
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(self.text()))
        else:
            print(self.text(), file=self.stream, flush=True)

    def close(self) -> None:
        self.update(force=True)
        if self._live is not None:
            self._live.stop()
            self._live = None
