import io
import json

import pytest

from main import main


def test_report_for_a_file(tmp_path, capsys):
    path = tmp_path / "poem.txt"
    path.write_text("Roses are red\nviolets are blue\n", encoding="utf-8")

    assert main([str(path), "--top", "1"]) == 0

    out = capsys.readouterr().out
    assert "words:        6" in out
    assert "top words:    are (2)" in out


def test_json_output_for_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a b a"))

    assert main(["--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["<stdin>"]["words"] == 3
    assert data["<stdin>"]["top_words"][0] == {"word": "a", "count": 2}


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.txt")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_negative_top_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--top", "-1"])
    assert exc.value.code == 2
    assert "--top must be zero or more" in capsys.readouterr().err
