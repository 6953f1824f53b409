"""Plain-text tables the benchmarks print."""
from __future__ import annotations


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    """`title`, then the rows in left-aligned columns under `header` and a rule."""
    print(f"\n{title}")
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    for i, row in enumerate([header, *rows]):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
