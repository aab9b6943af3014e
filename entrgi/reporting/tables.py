"""How the reports write a number and a table: Markdown tables, formatted statistics, row names.
Shared by the sweep report and the post-training report; imports nothing of entrgi."""

from __future__ import annotations

def fmt(stat: dict | None, signed: bool = True, interval: bool = True) -> str:
    if stat is None:
        return "—"
    if "rate" in stat:
        return f"{stat['rate']:.3f} ± {stat['stderr']:.3f} [{stat['low']:.3f}, {stat['high']:.3f}]"
    sign = "+" if signed else ""
    if "low" in stat and interval:
        return f"{stat['mean']:{sign}.4f} ± {stat['stderr']:.4f} [{stat['low']:{sign}.4f}, {stat['high']:{sign}.4f}]"
    mark = "†" if stat.get("seeds") == 1 else ""
    return f"{stat['mean']:{sign}.4f} ± {stat['stderr']:.4f}{mark}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def row_name(row: tuple[str, str]) -> str:
    return " ".join(filter(None, row))


def seeds_note(have: list[int], expected: list[int]) -> str:
    """A cell's mark when it is built from fewer seeds than the sweep ran."""
    if set(have) >= set(expected):
        return ""
    return f" [{len(have)} of {len(expected)} seeds: {', '.join(map(str, have)) or 'none'}]"

