"""`laclip-lite grade`: autograde a submitted assignment notebook against its source notebook."""
from __future__ import annotations

from laclip_lite.course.assignments import grade, report_json


def add_arguments(p) -> None:
    p.add_argument("submission", help="the student's .ipynb")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--source", default=None,
                   help="the source notebook it was released from (default: matched by nbgrader grade_ids)")
    p.add_argument("--source-dir", default=None, help="folder of source notebooks to match against "
                   "(default: the kit's own, shipped in laclip_lite/course/assignments)")
    p.add_argument("--timeout", type=int, default=60, help="seconds a cell may run before it is stopped")
    p.add_argument("--executed", default=None, metavar="PATH", help="also save the graded run as a notebook")


def run(args) -> int:
    report = grade(args.submission, source=args.source, source_dir=args.source_dir, timeout=args.timeout,
                   executed_path=args.executed)
    print(report_json(report) if args.json else report.format())
    return 0
