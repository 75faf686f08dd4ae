"""`gateway hash --csv` as a real process: its errors name the file at fault and never echo a
cell (a file without a header row starts with a person's data)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.processes import gateway_env, run_gateway

PERSON = "taro.yamada@example.jp, 090-1234-5678"


def test_a_file_without_a_header_row_is_not_echoed(tmp_path: Path) -> None:
    src = tmp_path / "members.csv"
    src.write_text(f"{PERSON}\nhanako@example.jp, 080-0000-0000\n", encoding="utf-8")
    done = run_gateway("hash", "--csv", str(src), "--columns", "email", env=gateway_env(tmp_path))
    assert done.returncode == 2
    assert done.stderr == (
        f"gateway hash: {src}: no column 'email' in the header row (its 2 cells are not shown: "
        "in a file without a header row they are a person's data)\n"
    )
    assert "taro" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["members.csv"]


def test_an_output_path_that_cannot_be_written_is_the_one_named(tmp_path: Path) -> None:
    src = tmp_path / "members.csv"
    src.write_text("email\ntaro.yamada@example.jp\n", encoding="utf-8")
    env = gateway_env(tmp_path)
    out = tmp_path / "missing" / "hashed.csv"
    done = run_gateway("hash", "--csv", str(src), "--columns", "email", "--out", str(out), env=env)
    assert done.returncode == 2
    assert done.stderr == f"gateway hash: cannot write {out}: No such file or directory\n"
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = run_gateway(
        "hash", "--csv", str(src), "--columns", "email", "--out", str(folder), env=env
    )
    assert done.returncode == 2
    assert done.stderr == f"gateway hash: cannot write {folder}: Is a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder", "members.csv"]
    missing = tmp_path / "nope.csv"
    done = run_gateway("hash", "--csv", str(missing), "--columns", "email", env=env)
    assert done.stderr == f"gateway hash: {missing}: No such file or directory\n"
