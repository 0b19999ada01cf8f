"""The command line as a user meets it: a refusal is one line on stderr, "vidx COMMAND: error: REASON",
with exit 2 (1 for what is not the user's doing) and no traceback; an answer's last stdout line is JSON."""

from __future__ import annotations

import json
import subprocess

from jobs.__main__ import main


def prefix(command: str) -> str:
    return f"vidx {command}: error: "


def cli_error(capsys, *argv: str, code: int = 2) -> str:
    """`vidx ARGV` in this process: exit `code`, exactly one line on stderr, "vidx COMMAND: error: "
    first and no traceback. Returns the line without that prefix."""
    assert main(list(argv)) == code
    err = capsys.readouterr().err
    start = prefix(argv[0])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith(start), err
    return err.strip()[len(start):]


def cli_json(capsys, *argv: str):
    """`vidx ARGV` in this process: exit 0; its last stdout line, read as JSON."""
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def refused(result: subprocess.CompletedProcess, command: str) -> str:
    """A `vidx COMMAND` subprocess that refused to run: exit 2, no traceback, and among its log lines
    exactly one "vidx COMMAND: error: " line. Returns that line without the prefix."""
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    start = prefix(command)
    [line] = [line for line in result.stderr.splitlines() if line.startswith(start)]
    return line[len(start):]
