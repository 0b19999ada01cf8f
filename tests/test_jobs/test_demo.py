"""`vidx demo`: sample videos indexed, loaded and searched, offline, through the CLI entry point."""

from __future__ import annotations

from jobs.__main__ import main


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of the data rows of a table as DuckDB draws it (after the ├ line)."""
    body = lines[next(i for i, line in enumerate(lines) if line.startswith("├")) + 1:]
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in body if line.startswith("│")]


def test_demo_prints_ranked_matches_and_a_filtered_sql_query(tmp_path, capsys, local_ray):
    assert main(["demo", "--out", str(tmp_path), "--n", "6", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("query: 'a red circle moves to the left'"))
    assert "6 videos" in lines[start]
    scores = [float(line.split()[1]) for line in lines[start + 1 : start + 4]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert lines[start + 4].startswith("sql: SELECT video_id")
    grouped = next(i for i, line in enumerate(lines) if line.startswith("sql: SELECT direction, count(*)"))
    rows = table_rows(lines[start + 5 : grouped])
    assert rows and all(row[3] in ("left", "right") for row in rows)
    groups = table_rows(lines[grouped + 1 : -1])  # one row per direction, the best match first
    best = [float(row[2]) for row in groups]
    assert len(groups) > 1 and best == sorted(best, reverse=True)
    assert lines[-1] == f"search page: vidx serve --db {tmp_path / 'vidx.db'}   then open http://127.0.0.1:8000/"
