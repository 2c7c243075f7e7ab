"""`laclip-lite demo`: run the four lesson notebooks with CPU defaults and write runs/demo/REPORT.md."""
from __future__ import annotations

from laclip_lite.course.report import run as run_report


def run(args) -> int:
    return run_report(args)
