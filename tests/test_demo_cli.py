"""`hotline demo` on a port that another program holds."""

from __future__ import annotations

import socket

import pytest
from click.testing import CliRunner

from hotline.cli.demo import demo


@pytest.mark.parametrize("language, message", [(None, "无法使用"), ("en", "is not available")])
def test_taken_port_stops_before_any_work(tmp_path, language, message):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {"HOTLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
               "HOTLINE_INSTANCE_DIR": str(tmp_path / "instance"), "HOTLINE_CLI_LANGUAGE": language}

        result = CliRunner().invoke(demo, ["--port", str(port)], env=env)

    assert result.exit_code == 1
    assert f"127.0.0.1:{port} {message}" in result.output
    assert f"make demo PORT={port + 1}" in result.output
    assert not (tmp_path / "demo.sqlite3").exists(), "nothing was migrated"
    assert not (tmp_path / "instance").exists(), "no credentials were written"
