"""A columnar Arrow batch into a Milvus collection, as one InsertRequest, through pymilvus 3.0.2.

pymilvus 3.0.2 (pinned) has no public columnar insert that packs vectors without Python floats:

- `MilvusClient.insert` takes row dicts only; it turns each vector into Python floats (ndarray.tolist)
  and appends them one by one: packing a batch that way costs far more CPU than here, and
  inserting it into embedded milvus-lite takes longer (docs/benchmarks.md, "Why the constants are
  what they are").
- The ORM `Collection.insert` takes columns or a DataFrame but flattens the vectors the same way
  (as costly), and it is deprecated: removed in pymilvus 3.1.
- Bulk import (`bulk_writer.bulk_import`, `utility.do_bulk_insert`) imports files from the server's
  object storage as an asynchronous job; milvus-lite has no Import RPC.

So the request is built here and handed to the connection MilvusClient.insert itself uses. These
pymilvus internals are what this relies on, and tests/test_storage/test_milvus/test_insert_request.py fails if
the pinned pymilvus changes them:
- `MilvusClient._get_connection()` and `MilvusClient._generate_call_context()`, the two calls
  MilvusClient.insert makes;
- the connection's `batch_insert(name, [], insert_param=request, schema=description, context=...)`,
  which sends `insert_param` as it is (the ORM Collection.insert path), and its `upsert(..,
  upsert_param=request, ..)`, the same for an UpsertRequest; both return a MutationResult whose
  `timestamp` a reader may ask to see (storage/milvus/nights.py), as does its `delete(name,
  condition, ..)`, which MilvusClient.delete calls and does not return;
- `pymilvus.client.entity_helper.entity_to_field_data`, pymilvus' own packing of a column, used for
  the scalars (nulls, VARCHAR length checks) so that they are packed exactly as pymilvus packs them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from google.protobuf import wrappers_pb2
from pymilvus import DataType, MilvusClient
from pymilvus.client import entity_helper
from pymilvus.grpc_gen import milvus_pb2, schema_pb2


def _fill_float_vectors(field: schema_pb2.FieldData, name: str, column: pa.ChunkedArray) -> None:
    """Fill `field` with a fixed_size_list<float32>[D] column as Milvus' FLOAT_VECTOR field data.

    FloatArray is `repeated float data = 1`, packed: key 0x0A (field 1, length-delimited), the byte
    length as a varint, the little-endian floats. The floats are copied once, into that encoding,
    and parsed once, where pymilvus boxes every float in Python. `field` is filled where it lies in
    its request: appending a finished message would copy it again."""
    dim, size = column.type.list_size, 4 * column.type.list_size * len(column)
    # protobuf writes the varint: UInt64Value is `uint64 value = 1`, so its encoding is the key 0x08
    # and then the varint of `value`, except that proto3 writes nothing at all for 0.
    header = b"\x0a" + (wrappers_pb2.UInt64Value(value=size).SerializeToString()[1:] or b"\x00")
    encoded = bytearray(len(header) + size)
    encoded[:len(header)] = header
    np.concatenate([chunk.flatten().to_numpy() for chunk in column.chunks],
                   out=np.frombuffer(encoded, "<f4", offset=len(header)))
    field.field_name, field.type = name, DataType.FLOAT_VECTOR
    field.vectors.dim = dim
    field.vectors.float_vector.ParseFromString(encoded)


def insert_columns(client: MilvusClient, name: str, rows: pa.Table, description: dict | None = None,
                   upsert: bool = False, partition: str = "") -> int | None:
    """Insert `rows` into collection `name` as one request: every column of `rows` is a field of the
    collection, a FLOAT_VECTOR field a fixed_size_list<float32>[D]. `description` is
    `client.describe_collection(name)`, asked for when not given. With `upsert`, a row replaces the
    stored one of the same primary key (Milvus' upsert: the same fields, another request), and the
    upsert's Milvus timestamp is returned (a read as of it sees the rows). `partition`: the
    partition the rows go to (the default one when empty)."""
    if description is None:
        description = client.describe_collection(name)
    fields = {field["name"]: field for field in description["fields"]}
    request = (milvus_pb2.UpsertRequest if upsert else milvus_pb2.InsertRequest)(
        collection_name=name, partition_name=partition, num_rows=rows.num_rows)
    for column in rows.column_names:
        if fields[column]["type"] == DataType.FLOAT_VECTOR:
            _fill_float_vectors(request.fields_data.add(), column, rows[column])
        else:
            values = {"name": column, "type": fields[column]["type"], "values": rows[column].to_pylist()}
            request.fields_data.append(entity_helper.entity_to_field_data(values, fields[column], rows.num_rows))
    # Private: MilvusClient.insert and upsert take rows only (see the module docstring for the cost and why).
    connection, context = client._get_connection(), client._generate_call_context()
    if upsert:
        return connection.upsert(name, [], upsert_param=request, schema=description, context=context).timestamp
    connection.batch_insert(name, [], insert_param=request, schema=description, context=context)
    return None


def delete_where(client: MilvusClient, name: str, condition: str, timeout: float | None) -> int:
    """Delete the rows of collection `name` that the filter `condition` keeps; the write's Milvus
    timestamp (MilvusClient.delete returns none: its connection's delete, as MilvusClient calls it)."""
    return client._get_connection().delete(name, condition, timeout=timeout,
                                           context=client._generate_call_context()).timestamp
