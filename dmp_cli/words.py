"""How dmp words numbers for people: plurals, and sizes in binary units."""

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
