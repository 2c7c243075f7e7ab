"""`laclip-lite demo`: run the four lesson notebooks with CPU defaults and write runs/demo/REPORT.md."""
from __future__ import annotations

from laclip_lite.course.report import add_arguments as report_arguments
from laclip_lite.course.report import run as run_report


def add_arguments(p) -> None:
    report_arguments(p)


def run(args) -> int:
    return run_report(args)
