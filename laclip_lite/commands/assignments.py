"""`laclip-lite assignments`: write the student versions of the course assignment notebooks."""
from __future__ import annotations

from laclip_lite.course.assignments import write_release


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="folder for the student notebooks (created if missing)")
    p.add_argument("--source", default=None,
                   help="folder of source notebooks with solutions (default: the kit's own, shipped in "
                        "laclip_lite/course/assignments)")


def run(args) -> int:
    for path in write_release(args.out, args.source):
        print(f"wrote {path}")
    return 0
