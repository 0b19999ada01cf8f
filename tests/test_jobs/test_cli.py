"""The command line as a whole (jobs/__main__.py): it starts without heavy imports, every command has
help stating the jobs' own defaults, user errors are one line with exit 2, what is not the user's
doing (a database that cannot be reached) one line with exit 1, bugs tracebacks; and a command that
only reads creates no database."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cli import cli_error
from encoders.config import ModelConfigError, get_model_config
from errors import IntegrityError, NotFound, TooLarge, Unavailable, UserError, exit_code, http_status
from jobs.__main__ import build_parser, main
from servers import free_port
from storage.query import QueryError

HEAVY = ("torch", "open_clip", "ray", "pymilvus", "decord")
# One valid command line per command: what `vidx COMMAND ...` parses before it runs anything.
COMMAND_LINES = [
    ["demo"], ["index", "--manifest", "m.jsonl", "--output", "out"], ["nightly", "--manifest", "m", "--workdir", "w"],
    ["load", "--embeddings", "out"], ["search", "--text", "a dog"], ["query", "SELECT * FROM videos"], ["serve"],
    ["eval", "--embeddings", "out"], ["train", "--manifest", "m", "--output", "o"], ["synth", "--out", "s"],
    ["duplicates", "--embeddings", "out", "--threshold", "0.9"],
]


def imported_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has imported after running `code`."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_parsing_every_command_imports_nothing_heavy():
    code = (f"from jobs.__main__ import build_parser\n"
            f"for argv in {COMMAND_LINES!r}:\n    build_parser().parse_args(argv)")
    assert imported_after(code) == []


def test_every_command_has_help(capsys):
    for argv in COMMAND_LINES:
        with pytest.raises(SystemExit) as done:
            main([argv[0], "--help"])
        assert done.value.code == 0 and capsys.readouterr().out.startswith(f"usage: vidx {argv[0]}")


def test_a_query_without_similarity_imports_no_torch(loaded, tmp_path):
    output, _ = loaded
    db = str(tmp_path / "own.db")  # milvus-lite: one process per database, so a copy of its own
    subprocess.run([sys.executable, "-m", "jobs", "load", "--embeddings", str(output), "--db", db], check=True,
                   capture_output=True, timeout=300)
    sql = "SELECT video_id FROM videos WHERE colour = 'red' LIMIT 2"
    code = f"from jobs.__main__ import main\nassert main(['query', '--db', {db!r}, {sql!r}]) == 0"
    assert imported_after(code) == ["pymilvus"]


def test_help_states_the_jobs_own_defaults():
    from jobs.nightly import NightlyOptions
    from jobs.pipeline.options import IndexOptions
    from jobs.server.options import ServeOptions
    from storage.table.dataset import ROWS_PER_PART

    DEFAULT_BATCH_SIZE = IndexOptions().batch_size
    DEFAULT_KEEP = NightlyOptions().keep
    DEFAULT_MAX_UPLOAD_MB = ServeOptions().max_upload_mb

    def help_text(command: str) -> str:
        parser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
        return " ".join(parser.format_help().split())

    assert f"videos per encoder call (default {DEFAULT_BATCH_SIZE})" in help_text("index")
    assert f"rows per Parquet part (default {ROWS_PER_PART})" in help_text("index")
    assert f"versions kept per alias (default {DEFAULT_KEEP})" in help_text("nightly")
    assert f"uploaded clips included (default {DEFAULT_MAX_UPLOAD_MB:g})" in help_text("serve")


def test_a_flag_left_out_takes_the_jobs_default(monkeypatch):
    seen = {}
    monkeypatch.setattr("jobs.index.index", lambda manifest, output, **options: seen.update(options) or {})
    assert main(["index", "--manifest", "m", "--output", "o", "--workers", "2"]) == 0
    assert seen == {"workers": 2}  # the rest are the job's own: IndexOptions' defaults


def raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as e:
        return e


def test_errors_are_classed_by_what_happened():
    assert http_status(raised(QueryError("bad"))) == 400
    assert http_status(raised(UserError("bad"))) == 400
    assert http_status(raised(NotFound("gone"))) == 404
    assert http_status(raised(TooLarge("big"))) == 413
    with pytest.raises(ModelConfigError) as unknown_model:
        get_model_config("no-such-model")  # defined in encoders, which cannot import jobs
    assert http_status(unknown_model.value) == 400
    with pytest.raises(ValueError) as by_numpy:
        np.zeros(2).reshape(3)  # a ValueError, but a bug: vidx never lets numpy judge its input
    assert http_status(by_numpy.value) is None
    assert http_status(raised(ValueError("a contract broken inside vidx"))) is None
    assert http_status(raised(KeyError("x"))) is None
    assert http_status(raised(RuntimeError("x"))) is None
    assert exit_code(raised(QueryError("bad"))) == 2 and exit_code(raised(NotFound("gone"))) == 2
    # Not the user's doing: the database is down (503, retry later), or vidx's own check failed.
    assert (http_status(raised(Unavailable("down"))), exit_code(raised(Unavailable("down")))) == (503, 1)
    assert (http_status(raised(IntegrityError("bad"))), exit_code(raised(IntegrityError("bad")))) == (500, 1)
    assert exit_code(raised(KeyError("x"))) is None


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(_):
        return {}["missing"]

    monkeypatch.setattr("jobs.evaluation.evaluate", broken)
    with pytest.raises(KeyError):
        main(["eval", "--embeddings", "anything"])


def test_a_database_that_cannot_be_reached_is_exit_1_naming_it(capsys):
    db = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for argv in (["query", "--db", db, "SELECT * FROM videos"], ["search", "--db", db, "--text", "a dog"]):
        line = cli_error(capsys, *argv, code=1)
        assert line.startswith(f"cannot open vector database {db}: ") and "server unavailable" in line


@pytest.mark.parametrize("argv", [
    ["query", "SELECT * FROM videos"], ["search", "--text", "a dog"], ["serve"],
])
def test_a_command_that_only_reads_creates_no_database(tmp_path, capsys, argv):
    db = tmp_path / "no" / "such" / "vidx.db"
    line = cli_error(capsys, argv[0], "--db", str(db), *argv[1:])
    assert line.startswith(f"no vector database at {db}")
    assert not (tmp_path / "no").exists()
