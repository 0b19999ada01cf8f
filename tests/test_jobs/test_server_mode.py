"""`--db http://host:port`: load, search and query a Milvus server through the same code as milvus-lite."""

from __future__ import annotations

import json

from jobs.__main__ import main
from jobs.load import load


def run(capsys, *args: str):
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_a_server_answers_as_the_embedded_database(loaded, milvus_server, capsys):
    output, lite = loaded
    swapped = load(str(output), milvus_server)
    assert swapped["videos"]["collection"].startswith("videos_") and swapped["captions"]["rows"] > 0
    search = ["search", "--text", "a green square moves up", "-k", "6", "--where", "segment == 0"]
    assert run(capsys, *search, "--db", milvus_server) == run(capsys, *search, "--db", lite)
    sql = ("SELECT video_id, colour, score FROM videos WHERE colour IN ('red', 'blue') "
           "ORDER BY similarity(TEXT('a blue triangle')) DESC LIMIT 5")
    assert run(capsys, "query", "--db", milvus_server, sql) == run(capsys, "query", "--db", lite, sql)
