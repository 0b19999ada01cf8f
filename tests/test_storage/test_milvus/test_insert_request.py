"""storage/insert_request.py: a columnar batch sent as one InsertRequest, equal to what pymilvus' own
packing makes, and the pymilvus internals that relies on (pinned: these fail when they change)."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pyarrow as pa
import pytest
from pymilvus import DataType, MilvusClient
from pymilvus.client import entity_helper
from pymilvus.client.call_context import CallContext
from pymilvus.client.grpc_handler import GrpcHandler
from pymilvus.exceptions import MilvusException
from pymilvus.grpc_gen import milvus_pb2

from storage.milvus.insert_request import insert_columns

DIM = 16
SCALARS = {"title": DataType.VARCHAR, "score": DataType.DOUBLE, "ok": DataType.BOOL, "frames": DataType.INT64}


def rows_table(n: int, seed: int = 0) -> pa.Table:
    """`n` rows of every column type vidx stores, nulls in the nullable fields."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    return pa.table({
        "key": [f"v{i}#0" for i in range(n)],
        "title": [None if i % 5 == 0 else f"clip {i}" for i in range(n)],
        "score": [None if i % 7 == 0 else float(rng.uniform()) for i in range(n)],
        "ok": [None if i % 11 == 0 else i % 2 == 0 for i in range(n)],
        "frames": pa.array([None if i % 13 == 0 else i for i in range(n)], pa.int64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), DIM),
    })


def create(client: MilvusClient, name: str) -> None:
    """A collection as VectorStore.create_collection makes one on milvus-lite (nullable scalars)."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=65_535)
    for field, datatype in SCALARS.items():
        length = {"max_length": 65_535} if datatype == DataType.VARCHAR else {}
        schema.add_field(field, datatype, nullable=True, **length)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(name, schema=schema)


class Sent:
    """A MilvusClient's stand-in for insert_columns: the two calls it makes, and the request sent."""

    def __init__(self):
        self.request: milvus_pb2.InsertRequest | None = None

    def _get_connection(self):
        return self

    def _generate_call_context(self):
        return None

    def batch_insert(self, name, entities, insert_param, schema, context):
        self.request = insert_param


def by_name(request: milvus_pb2.InsertRequest) -> dict:
    return {field.field_name: field for field in request.fields_data}


def test_the_pymilvus_internals_it_calls_are_as_pinned(tmp_path):
    """What insert_columns and delete_where call beyond the public API, as pymilvus 3.0.2 has it."""
    client = MilvusClient(str(tmp_path / "contract.db"))
    try:
        assert list(inspect.signature(MilvusClient._get_connection).parameters) == ["self"]
        assert isinstance(client._get_connection(), GrpcHandler)
        assert isinstance(client._generate_call_context(), CallContext)
    finally:
        client.close()
    batch_insert = inspect.signature(GrpcHandler.batch_insert).parameters
    assert list(batch_insert)[:3] == ["self", "collection_name", "entities"]
    assert {"timeout", "context"} <= set(batch_insert)
    assert batch_insert["kwargs"].kind is inspect.Parameter.VAR_KEYWORD  # insert_param=, schema=
    # The prepared request goes out as it is, the entities unread: what the ORM's insert relies on too.
    request = milvus_pb2.InsertRequest(collection_name="c", num_rows=1)
    assert GrpcHandler._prepare_batch_insert_request(object(), "c", [], insert_param=request,
                                                     schema={"fields": []}) is request
    upsert = inspect.signature(GrpcHandler.upsert).parameters
    assert list(upsert)[:3] == ["self", "collection_name", "entities"] and {"timeout", "context"} <= set(upsert)
    upsert_request = milvus_pb2.UpsertRequest(collection_name="c", num_rows=1)
    assert GrpcHandler._prepare_batch_upsert_request(object(), "c", [], upsert_param=upsert_request,
                                                     schema={"fields": []}) is upsert_request
    assert list(inspect.signature(GrpcHandler.delete).parameters)[:3] == ["self", "collection_name", "expression"]
    packing = inspect.signature(entity_helper.entity_to_field_data).parameters
    assert list(packing) == ["entity", "field_info", "num_rows"]


@pytest.mark.parametrize("n", [0, 1, 8, 300])  # vector bytes 0, 64, 512, 19,200: length varints of 1, 1, 2, 3 bytes
def test_vectors_are_packed_as_pymilvus_packs_them(n):
    rows = rows_table(n).select(["embedding"])
    field_info = {"name": "embedding", "type": DataType.FLOAT_VECTOR, "params": {"dim": DIM}}
    sent = Sent()
    insert_columns(sent, "c", rows, {"fields": [field_info]})
    theirs = entity_helper.entity_to_field_data(
        {"name": "embedding", "type": DataType.FLOAT_VECTOR, "values": rows["embedding"].to_pylist()}, field_info, n)
    assert sent.request.num_rows == n
    assert list(sent.request.fields_data) == [theirs]
    assert sent.request.fields_data[0].SerializeToString() == theirs.SerializeToString()


def test_a_chunked_and_sliced_batch_is_packed_as_one():
    whole = rows_table(50)
    pieces = pa.concat_tables([whole.slice(0, 20), whole.slice(20, 30)])
    assert pieces["embedding"].num_chunks == 2 and pieces["embedding"].chunks[1].offset == 20
    key = {"name": "key", "type": DataType.VARCHAR, "params": {"max_length": 65_535}, "is_primary": True}
    description = {"fields": [key]
                   + [{"name": f, "type": t, "params": {"max_length": 65_535} if t == DataType.VARCHAR else {},
                       "nullable": True} for f, t in SCALARS.items()]
                   + [{"name": "embedding", "type": DataType.FLOAT_VECTOR, "params": {"dim": DIM}}]}
    one, two = Sent(), Sent()
    insert_columns(one, "c", whole.combine_chunks(), description)
    insert_columns(two, "c", pieces, description)
    assert two.request.SerializeToString() == one.request.SerializeToString()


def test_a_too_long_string_is_refused_as_pymilvus_refuses_it():
    vector = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(DIM, np.float32)), DIM)
    rows = pa.table({"key": ["a-long-key"], "embedding": vector})
    sent = Sent()
    with pytest.raises(MilvusException):
        insert_columns(sent, "c", rows, {"fields": [
            {"name": "key", "type": DataType.VARCHAR, "params": {"max_length": 4}, "is_primary": True},
            {"name": "embedding", "type": DataType.FLOAT_VECTOR, "params": {"dim": DIM}}]})
    assert sent.request is None


def test_inserts_what_milvusclient_insert_would_and_reads_back(tmp_path, monkeypatch):
    """The same rows through MilvusClient.insert (row dicts) and insert_columns, into embedded
    milvus-lite: the two InsertRequests hold the same field data, and the rows read back."""
    client = MilvusClient(str(tmp_path / "vidx.db"))
    try:
        for name in ("by_rows", "by_columns"):
            create(client, name)
        sent = []
        connection = client._get_connection()
        stub = connection._stub

        class Insert:  # insert_rows calls Insert(request=...), batch_insert Insert.future(request, ...)
            def __call__(self, request, **kwargs):
                sent.append(request)
                return stub.Insert(request, **kwargs)

            def future(self, request, **kwargs):
                sent.append(request)
                return stub.Insert.future(request, **kwargs)

        class Stub:
            def __getattr__(self, name):
                return recording if name == "Insert" else getattr(stub, name)

        recording = Insert()

        monkeypatch.setattr(connection, "_stub", Stub())
        whole = rows_table(300)
        rows = pa.concat_tables([whole.slice(0, 120), whole.slice(120)])  # two chunks, the second sliced
        client.insert("by_rows", rows.to_pylist())
        insert_columns(client, "by_columns", rows)
        assert [request.collection_name for request in sent] == ["by_rows", "by_columns"]
        by_rows, by_columns = sent
        assert by_columns.num_rows == by_rows.num_rows == 300
        assert list(by_name(by_columns)) == rows.column_names
        for field in rows.column_names:
            assert by_name(by_columns)[field] == by_name(by_rows)[field], field

        keys = rows["key"].to_pylist()
        back = client.query("by_columns", filter=f"key in {json.dumps(keys)}", output_fields=["*"])
        assert sorted(row["key"] for row in back) == sorted(keys)
        expected = {row["key"]: row for row in rows.to_pylist()}
        for row in back:
            want = expected[row["key"]]
            np.testing.assert_allclose(np.asarray(row["embedding"], np.float32), want["embedding"], rtol=0, atol=1e-6)
            assert {f: row[f] for f in SCALARS} == {f: want[f] for f in SCALARS}
    finally:
        client.close()
