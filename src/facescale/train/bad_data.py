"""Bad records skipped on any rank (``data.bad_data=skip``), reported once on rank 0.

Each rank's loader sees only its own share of the data, so a record skipped on rank 3 would be
reported on rank 3, whose output a launcher usually hides. The reports are gathered and rank 0
prints them all, each line once (what every rank found when opening the set is the same).
"""

from __future__ import annotations

from typing import Any, Protocol


class _Gatherer(Protocol):
    rank: int
    world_size: int

    def all_gather_object(self, obj: Any) -> list[Any]: ...


def gather_bad_data_reports(ctx: _Gatherer, report: str | None) -> str | None:
    """Collective: every rank's report (text or None) merged on rank 0; None elsewhere or when clean."""
    reports = ctx.all_gather_object(report) if ctx.world_size > 1 else [report]
    if ctx.rank != 0:
        return None
    lines: list[str] = []
    seen: set[str] = set()
    for text in reports:
        for line in (text or "").splitlines():
            if line not in seen:  # ranks skip disjoint records, so only the open's lines repeat
                lines.append(line)
                seen.add(line)
    return "\n".join(lines) if lines else None
