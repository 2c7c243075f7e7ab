"""How fast the embedded world draws itself: ShapeWorld images + captions per second (CPU time and wall time).

    python benchmarks/world_speed.py [--n 600,3000] [--size 32]

Every notebook and test builds its splits on the fly, so generation must stay a small part of a lesson's
minutes (the unit tests used to assert "600 images in < 3 s"; the number now lives here, measured, not asserted).
Each split is drawn once in this process; CPU time (user + sys of this process) is printed next to wall time,
since the machine may be shared.
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="600,3000", help="comma list of split sizes")
    ap.add_argument("--size", type=int, default=32, help="image side in pixels")
    args = ap.parse_args()
    from laclip_lite.data.shapeworld import ShapeWorld
    from laclip_lite.utils import markdown_table

    ShapeWorld(seed=0, image_size=args.size).split("val", 8)      # warm-up (imports, lexicon)
    rows = []
    for n in (int(x) for x in args.n.split(",")):
        wall, cpu = time.perf_counter(), time.process_time()
        ShapeWorld(seed=0, image_size=args.size).split("test", n)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append({"images": n, "wall s": f"{wall:.2f}", "CPU s": f"{cpu:.2f}", "images/s (wall)": f"{n / wall:.0f}"})
    columns = ["images", "wall s", "CPU s", "images/s (wall)"]
    print(f"ShapeWorld at {args.size} px")
    print(markdown_table(rows, columns, right=columns), end="")


if __name__ == "__main__":
    main()
