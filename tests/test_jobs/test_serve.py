"""`vidx serve`, the command: what it refuses before serving anything (a host beyond localhost
without a token, replicas on milvus-lite, limits out of range). The server it starts is tested in
test_server/."""

from __future__ import annotations

import pytest

from errors import UserError
from jobs.serve import serve


def test_binding_beyond_localhost_needs_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv("VIDX_TOKEN", raising=False)
    with pytest.raises(ValueError, match="give --token or set VIDX_TOKEN"):
        serve(str(tmp_path / "vidx.db"), host="0.0.0.0")


def test_replicas_refuse_a_milvus_lite_database_and_limits_must_be_sane(tmp_path):
    with pytest.raises(UserError, match="milvus-lite .* lets one process own a database: give a Milvus server"):
        serve(str(tmp_path / "vidx.db"), ray=True)
    with pytest.raises(UserError, match="--max-in-flight 0: should be greater than or equal to 1"):
        serve(str(tmp_path / "vidx.db"), max_in_flight=0)
