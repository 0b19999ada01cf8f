"""An embedded milvus-lite collection's description (its fields and properties), recorded beside
its exact copy by the vidx process that changed it.

milvus-lite opens a collection by reading every row it stores into memory (the vectors and a
dictionary of keys), even to describe it: 4 s and 1 GB at 10^5 x 1024 (docs/benchmarks.md, "The
embedded default"). A process that answers from the exact copy needs only the description. So
after each change vidx makes to one (its creation, a property write) the store records what
milvus-lite then describes, and a reader takes the record when it is there. milvus-lite stays
the database of record: a collection without one (made by an earlier vidx, or by hand) is
described by milvus-lite, and a reader resolves aliases through it each time.
"""

from __future__ import annotations

import json
from pathlib import Path

from pymilvus import DataType

from storage.table.atomic import publish_in

# Field keys whose values are pymilvus DataTypes (JSON holds their numbers).
TYPE_KEYS = ("type", "element_type")


def description_path(copy_path: Path) -> Path:
    """`<name>.description.json` beside the exact copy `<name>.arrow`."""
    return copy_path.with_suffix(".description.json")


def record_description(copy_path: Path, description: dict) -> None:
    publish_in(str(copy_path.parent), description_path(copy_path).name, json.dumps(description).encode())


def recorded_description(copy_path: Path) -> dict | None:
    """The description recorded for the collection whose copy is at `copy_path`; None without one."""
    try:
        description = json.loads(description_path(copy_path).read_text())
    except FileNotFoundError:
        return None
    for field in description["fields"]:
        for key in TYPE_KEYS:
            if key in field:
                field[key] = DataType(field[key])
    return description
