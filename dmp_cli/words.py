"""How dmp words numbers for people: plurals, sizes in binary units, durations, rates."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ... ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def plural(n: int, singular: str, plural_form: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {singular if n == 1 else plural_form}"


def duration(seconds: float) -> str:
    """``0.04 s``, ``4.2 s``, ``3m 04s``, ``2h 03m 04s``."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def per_second(n: float, seconds: float) -> float:
    """A rate; a run too short for the clock to tell counts as a millisecond."""
    return n / max(seconds, 1e-3)


def files_rate(files: int, seconds: float) -> str:
    """``8,349 files/s``, ``2.5 files/s``."""
    rate = per_second(files, seconds)
    return f"{rate:,.0f} files/s" if rate >= 10 else f"{rate:.1f} files/s"


def pace(seconds: float, files: int, nbytes: int | None = None) -> str:
    """How long a run took and how fast it went: ``in 2.1 s (1.5 GiB/s, 8,349 files/s)``;
    without ``nbytes`` (nothing was read or moved), files only."""
    rates = [files_rate(files, seconds)]
    if nbytes is not None:
        rates.insert(0, f"{human_bytes(per_second(nbytes, seconds))}/s")
    return f"in {duration(seconds)} ({', '.join(rates)})"
