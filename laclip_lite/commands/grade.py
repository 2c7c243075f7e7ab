"""`laclip-lite grade`: autograde a submitted assignment notebook against its source notebook."""
from __future__ import annotations

from laclip_lite.course.assignments import grade, report_json


def run(args) -> int:
    report = grade(args.submission, source=args.source, source_dir=args.source_dir, timeout=args.timeout,
                   executed_path=args.executed)
    print(report_json(report) if args.json else report.format())
    return 0
