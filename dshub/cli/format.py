"""Human-readable numbers for the text (non --json) output of every command."""
from __future__ import annotations


def human(n: float) -> str:
    """Bytes in decimal units: `512 B`, `1.50 GB`."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def gb(n: int | None) -> str:
    """Bytes as GB with two decimals; `?` when unknown (a hub that lists no size)."""
    return "?" if n is None else f"{n / 1e9:.2f} GB"


def plural(n: int, noun: str) -> str:
    """`1 error`, `2 errors`, `3 bad hashes`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's'}"
