"""The ``constrain chat`` command: constrained answers printed, bad input a one-line error."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from constrain.cli import main

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": False}


def test_console_script_prints_schema_valid_json(tmp_path):
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMA))
    script = Path(sys.executable).with_name("constrain")
    done = subprocess.run(
        [str(script), "chat", "Is water wet?", "--json-schema", str(schema_file), "--temperature", "0", "--max-tokens", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) in ({"ok": True}, {"ok": False})
    assert "finish_reason: stop" in done.stderr


def test_regex_stream_and_seed(capsys):
    assert main(["chat", "A date?", "--regex", r"20\d\d-(0[1-9]|1[0-2])-[0-2]\d", "--stream", "--seed", "3",
                 "--temperature", "0.7", "--max-tokens", "12"]) == 0
    out = capsys.readouterr()
    assert re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])-[0-2]\d", out.out.strip()), out.out


def test_shipped_grammar_by_name(capsys):
    assert main(["chat", "Is the sky blue?", "--grammar", "yes_no", "--temperature", "0", "--max-tokens", "8"]) == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"(yes|no): [A-Za-z ,.'-]*", out), out


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--json-schema", "{not json"], "--json-schema"),
        (["--json-schema", "/no/such/file.json"], "--json-schema"),
        (["--json-schema", '{"type": "objekt"}'], "response_format"),
        (["--regex", "(unclosed"], "response_format"),
        (["--grammar", "no_such_grammar"], "--grammar"),
        (["--max-tokens", "-3"], "max_tokens"),
        (["--model", "/no/such/model"], "model"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, args, where):
    assert main(["chat", "hi", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("constrain: error") and where in err and "Traceback" not in err, err


@pytest.mark.parametrize(("command", "where"), [(["serve", "--max-batch", "0"], "max_batch"),
                                                 (["serve", "--max-queue", "-1"], "max_queue")])
def test_bad_server_options_are_one_clear_line(capsys, command, where):
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"constrain: error [{where}]") and "Traceback" not in err, err
