"""`laclip-lite demo`: run the four lesson notebooks with CPU defaults and write runs/demo/REPORT.md."""
from __future__ import annotations

HELP = "run the four lesson notebooks headless (papermill) and write <out>/REPORT.md"


def add_arguments(p) -> None:
    from laclip_lite.course.report import add_arguments as report_arguments
    report_arguments(p)


def run(args) -> int:
    from laclip_lite.course.report import run as run_report
    return run_report(args)
