"""``from experimaestro import tqdm``: tqdm's progress bar, which also reports the job's progress
(experimaestro 2.x's wrapper). Use it in ``execute()`` as tqdm itself::

    for batch in tqdm(batches, desc="training"):
        ...

Each bar reports its fraction done (its nesting level is its position) through
:func:`report_progress`, the one place that hands progress over to ``experimaestro.progress``.
"""

from __future__ import annotations

from typing import Any, Optional

from tqdm import tqdm as _std_tqdm


def report_progress(value: float, level: int = 0, desc: Optional[str] = None) -> None:
    """Report a job's progress with ``experimaestro.progress(value, level=, desc=)`` when this
    version has it (the web monitor's), and do nothing otherwise."""
    import experimaestro

    progress = getattr(experimaestro, "progress", None)
    if progress is not None:
        progress(value, level=level, desc=desc)


class xpm_tqdm(_std_tqdm):  # noqa: N801 - 2.x's name
    """A tqdm progress bar that reports its progress to experimaestro as it advances."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._xpm_closed = True  # close() may run inside tqdm's own __init__
        super().__init__(*args, **kwargs)
        self._xpm_closed = False
        self._xpm_level = abs(int(getattr(self, "pos", 0) or 0))
        report_progress(0.0, level=self._xpm_level, desc=kwargs.get("desc"))

    def update(self, n: float = 1) -> Optional[bool]:
        result = super().update(n)
        total = getattr(self, "total", None)
        if total:
            report_progress(min(1.0, self.n / total), level=self._xpm_level,
                            desc=getattr(self, "desc", None) or None)
        return result

    def close(self) -> None:
        # Iteration reports at tqdm's refresh interval only: say where the bar ended.
        # (a disabled bar lacks some attributes)
        total = getattr(self, "total", None)
        if not getattr(self, "_xpm_closed", True) and total:
            report_progress(min(1.0, self.n / total), level=self._xpm_level,
                            desc=getattr(self, "desc", None) or None)
        self._xpm_closed = True
        super().close()


def tqdm(*args: Any, **kwargs: Any) -> Any:
    """A tqdm progress bar (same arguments) that also reports its progress to experimaestro."""
    return xpm_tqdm(*args, **kwargs)


__all__ = ["report_progress", "tqdm", "xpm_tqdm"]
