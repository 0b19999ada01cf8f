"""text->video, video->video or video->text top-k under a filter: a door onto the query engine."""

from __future__ import annotations

from pydantic import Field

from storage.options import cli, collection_field, db_field
from storage.query.questions import Search
from storage.schema import VIDEOS


class Arguments(Search):
    db: str = db_field()
    collection: str = collection_field("the served collection to search")
    as_json: bool = Field(False, description="print one JSON list", json_schema_extra=cli(flag="--json"))


def search(db: str, collection: str = VIDEOS, **options) -> list[dict]:
    """Top-k rows of the videos served as `collection` in `db`, their captions, or a corpus (`target`),
    best first, each with its fields and `score`; `options`: Search's. Asked as the statement it is
    (storage/query/questions.py), so answered as `vidx query` answers that statement."""
    from encoders.recorded import RecordedModels
    from storage.milvus.store import VectorStore
    from storage.query.engine import Engine

    question = Search.of(**options)
    with VectorStore(db, create=False) as store:
        return Engine(store, RecordedModels()).search(question, collection)


def run(arguments: Arguments) -> list[dict] | str:
    from storage.query.formats import hit_lines

    hits = search(**arguments.model_dump(exclude={"as_json"}))
    return hits if arguments.as_json else hit_lines(hits)
