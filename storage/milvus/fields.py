"""Arrow columns as Milvus fields, and back: the types vidx stores, and those it leaves out."""

from __future__ import annotations

import logging

import pyarrow as pa
from pymilvus import DataType

from storage.schema import EMBEDDING, MAX_LIST

logger = logging.getLogger(__name__)

# Longest VARCHAR Milvus accepts.
MAX_VARCHAR = 65_535
# Milvus field types -> Arrow (the types vidx stores: collection_fields; its only arrays are tags).
ARROW_TYPES = {DataType.VARCHAR: pa.string(), DataType.BOOL: pa.bool_(), DataType.INT64: pa.int64(),
               DataType.DOUBLE: pa.float64(), DataType.ARRAY: pa.list_(pa.string())}


def _milvus_type(arrow_type: pa.DataType) -> dict | None:
    """Milvus field arguments for an Arrow column; None for types Milvus cannot filter on."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return {"datatype": DataType.VARCHAR, "max_length": MAX_VARCHAR}
    if pa.types.is_boolean(arrow_type):
        return {"datatype": DataType.BOOL}
    if pa.types.is_integer(arrow_type):
        return {"datatype": DataType.INT64}
    if pa.types.is_floating(arrow_type):
        return {"datatype": DataType.DOUBLE}
    return None


def text_list_field() -> dict:
    """Milvus field arguments of a tag column (storage/table/tag_columns.py): an ARRAY of VARCHAR. A
    manifest's own list columns stay unstored, as before: their lengths have no bound."""
    return {"datatype": DataType.ARRAY, "element_type": DataType.VARCHAR, "max_capacity": MAX_LIST,
            "max_length": MAX_VARCHAR}


def scalar_schema(description: dict, columns: list[str] | None) -> pa.Schema:
    """The Arrow types of `columns` of a described collection (None: every scalar field, in order)."""
    fields = [f for f in description["fields"] if f["name"] != EMBEDDING]
    types = {f["name"]: ARROW_TYPES.get(f["type"], pa.string()) for f in fields}
    return pa.schema([(column, types[column]) for column in (columns or list(types))])


def collection_fields(schema: pa.Schema, key: str) -> list[tuple[str, dict]]:
    """(name, Milvus field arguments) for every scalar column; the vector comes separately."""
    fields = []
    for field in schema:
        if field.name in (key, EMBEDDING):
            continue
        args = _milvus_type(field.type)
        if args is None:
            logger.warning("column %r (%s) is not stored in Milvus: no filterable type", field.name, field.type)
            continue
        fields.append((field.name, args))
    return fields
