"""`laclip-lite assignments`: write the student versions of the course assignment notebooks."""
from __future__ import annotations

from laclip_lite.course.assignments import write_release


def run(args) -> int:
    for path in write_release(args.out, args.source):
        print(f"wrote {path}")
    return 0
