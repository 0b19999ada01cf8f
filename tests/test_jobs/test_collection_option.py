"""`vidx load --collection NAME` serves an index under another alias, and every reader takes it:
search and serve by --collection, query by its FROM name; the captions go beside it."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from jobs.__main__ import main
from jobs.server.app import create_app

TEXT = "a red circle moves to the left"


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_collection_loaded_under_its_own_name_is_searched_queried_and_served_by_it(served_index, lite_db, tmp_path,
                                                                                     capsys):
    db = str(tmp_path / "vidx.db")
    assert main(["load", "--embeddings", str(served_index), "--db", db, "--collection", "library"]) == 0
    swapped = last_json(capsys)
    assert set(swapped) == {"library", "library_captions"}
    assert swapped["library"]["collection"].startswith("library_") and swapped["library"]["rows"] > 0

    search = ["search", "--text", TEXT, "-k", "5", "--json"]
    assert main([*search, "--db", db, "--collection", "library"]) == 0
    hits = last_json(capsys)
    assert main([*search, "--db", lite_db]) == 0  # the same index, served as `videos`
    assert [h["key"] for h in hits] == [h["key"] for h in last_json(capsys)]
    assert main(["search", "--db", db, "--collection", "library", "--target", "captions", "--video-id",
                 hits[0]["video_id"], "-k", "3", "--json"]) == 0
    assert [h["caption_id"] for h in last_json(capsys)]

    sql = f"SELECT key, score FROM library ORDER BY similarity(TEXT('{TEXT}')) DESC LIMIT 5"
    assert main(["query", "--db", db, "--json", sql]) == 0
    assert [row["key"] for row in last_json(capsys)] == [h["key"] for h in hits]
    assert main(["query", "--db", db, "--json", "SELECT caption_id, text FROM library_captions LIMIT 2"]) == 0
    assert len(last_json(capsys)) == 2

    with TestClient(create_app(db, cache_dir=tmp_path / "thumbnails", collection="library")) as client:
        assert client.get("/healthz").json()["videos"] == swapped["library"]["collection"]
        assert [h["key"] for h in client.post("/search", json={"text": TEXT, "k": 5}).json()] == [h["key"] for h in hits]
        assert client.get("/library").json()["captions"]["collection"] == swapped["library_captions"]["collection"]

        # Nothing was served as `videos` in this database.
        assert main(["search", "--db", db, "--text", TEXT]) == 2
        assert "no collection 'videos'" in capsys.readouterr().err
