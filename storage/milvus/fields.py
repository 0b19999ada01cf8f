"""Arrow columns as Milvus fields, and back: the types vidx stores, and those it leaves out."""

from __future__ import annotations

import pyarrow as pa
from pymilvus import DataType

from storage.schema import EMBEDDING, MAX_LIST, NIGHT_COLUMNS

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


def joined_field(field: pa.Field) -> dict:
    """Milvus field arguments of a column joined to the videos (storage/table/tag_columns.py): a
    tag list is an ARRAY of VARCHAR (text_list_field), the duplicate group a VARCHAR."""
    return text_list_field() if pa.types.is_list(field.type) else _milvus_type(field.type)


def scalar_schema(description: dict, columns: list[str] | None) -> pa.Schema:
    """The Arrow types of `columns` of a described collection (None: every scalar field a question
    may read, in order: not the nights of its row versions, storage/milvus/nights.py)."""
    fields = [f for f in description["fields"] if f["name"] != EMBEDDING and f["name"] not in NIGHT_COLUMNS]
    types = {f["name"]: ARROW_TYPES.get(f["type"], pa.string()) for f in fields}
    return pa.schema([(column, types[column]) for column in (columns or list(types))])


def stored_schema(description: dict) -> pa.Schema:
    """The Arrow types of every field of a described collection, as stored: the vector included."""
    def arrow_type(field: dict) -> pa.DataType:
        if field["name"] == EMBEDDING:
            return pa.list_(pa.float32(), field["params"]["dim"])
        return ARROW_TYPES.get(field["type"], pa.string())
    return pa.schema([(field["name"], arrow_type(field)) for field in description["fields"]])


def collection_fields(schema: pa.Schema, key: str) -> list[tuple[str, dict]]:
    """(name, Milvus field arguments) for every scalar column of a type Milvus filters on (see
    unstored_columns); the vector comes separately."""
    typed = ((field.name, _milvus_type(field.type)) for field in schema if field.name not in (key, EMBEDDING))
    return [(name, args) for name, args in typed if args is not None]


def unstored_columns(schema: pa.Schema) -> list[pa.Field]:
    """The columns no Milvus field holds: of types it cannot filter on (a manifest's lists)."""
    return [field for field in schema if field.name != EMBEDDING and _milvus_type(field.type) is None]
