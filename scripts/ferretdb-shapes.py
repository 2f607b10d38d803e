#!/usr/bin/env python3
"""What FerretDB charges per stored value: reads and updates of documents of the same 960 values
(10 metrics x 24 slots x 4 numbers, the size of a day of hourly rollups) in five shapes.

Run against the test FerretDB (after `eval "$(scripts/services.sh start)"`):

    python3 -m venv /tmp/shapes && /tmp/shapes/bin/pip install -q pymongo
    /tmp/shapes/bin/python scripts/ferretdb-shapes.py "$EDGEWATCH_TEST_MONGODB_URL"

Prints the median time of a `find` by `_id` and of a one-field update, per shape.
"""
import statistics
import sys
import time

import pymongo

METRICS, SLOTS = 10, 24
SLOT = (("c", 5), ("s", 1.5), ("lo", 0.1), ("hi", 2.2))
SHAPES = {
    "nested {metric: {slot: {c, s, lo, hi}}}": lambda: {
        "s": {f"m{i}": {str(k): dict(SLOT) for k in range(SLOTS)} for i in range(METRICS)}
    },
    "flat per metric {metric: {c0.., s0..}}": lambda: {
        "s": {f"m{i}": {f"{f}{k}": v for k in range(SLOTS) for f, v in SLOT} for i in range(METRICS)}
    },
    "flat top level": lambda: {
        f"m{i}|{k}|{f}": v for i in range(METRICS) for k in range(SLOTS) for f, v in SLOT
    },
    "arrays {metric: {c: [..]}}": lambda: {
        "s": {f"m{i}": {f: [v] * SLOTS for f, v in SLOT} for i in range(METRICS)}
    },
    "slot arrays {metric: {slot: [c, s, lo, hi]}}": lambda: {
        "s": {f"m{i}": {str(k): [v for _, v in SLOT] for k in range(SLOTS)} for i in range(METRICS)}
    },
}


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:57017/"
    client = pymongo.MongoClient(url)
    db = client["ferretdb_shapes"]
    try:
        for n, (name, make) in enumerate(SHAPES.items()):
            coll = db[f"shape{n}"]
            coll.drop()
            coll.insert_many([dict(make(), _id=f"d{j}") for j in range(40)])
            reads, updates = [], []
            for _ in range(3):
                for j in range(31):
                    started = time.perf_counter()
                    coll.find_one({"_id": f"d{j}"})
                    reads.append(time.perf_counter() - started)
            for j in range(31):
                started = time.perf_counter()
                coll.update_one({"_id": f"d{j}"}, {"$set": {"x": j}})
                updates.append(time.perf_counter() - started)
            print(
                f"{name:45} read p50 {statistics.median(reads) * 1e3:6.2f} ms"
                f"   update p50 {statistics.median(updates) * 1e3:6.2f} ms"
            )
    finally:
        client.drop_database("ferretdb_shapes")


if __name__ == "__main__":
    main()
