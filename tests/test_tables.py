"""Files as Excel, Outlook and Google Sheets write them (issue 26 item 2): ``read_table`` and the command line
read each as they read a clean UTF-8 CSV of the same data."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.cli import main
from apollo_frames.core.errors import InputError
from apollo_frames.io.tables import detect_encoding, detect_header, detect_sep

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
HEADER = ["First Name", "Last Name", "Email", "Company", "Notes"]


def _rows() -> list[list[str]]:
    """People of the CLI's sandbox world (its sample file), and one it lacks, with letters cp1252 has."""
    frame = pd.read_csv(SAMPLES / "people.csv", dtype=str, nrows=12).fillna("")
    rows = [[r["First Name"], r["Last Name"], r["Email"], r["Company"], "ok"] for _, r in frame.iterrows()]
    rows.append(["Zoë", "Ångström", "zoe.angstrom@velvet-anvil-co.example", "Velvet Anvil Co", "café; «note»"])
    return [r for r in rows if all(c.encode("cp1252", "ignore").decode("cp1252") == c for c in r)]


def _text(rows: list[list[str]], sep: str = ",", header: list[str] = HEADER, before: str = "",
          extra: int = 0, line: str = "\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator=line)
    writer.writerows([header + [""] * extra] + [r + [""] * extra for r in rows])
    if extra:
        buffer.write(sep * (len(header) + extra - 1) + line)  # Sheets' empty rows at the end
    return before + buffer.getvalue()


def _files(tmp_path: Path) -> dict[str, Path]:
    """The same rows as each program writes them; "clean" is the plain UTF-8 CSV."""
    rows = _rows()
    made = {
        "clean": ("clean.csv", _text(rows).encode("utf-8")),
        "utf8_bom": ("bom.csv", _text(rows, line="\r\n").encode("utf-8-sig")),
        "utf16_tabs": ("unicode.txt", _text(rows, sep="\t", line="\r\n").encode("utf-16")),
        "cp1252": ("excel.csv", _text(rows, line="\r\n").encode("cp1252")),
        "semicolon_cp1252": ("europe.csv", _text(rows, sep=";", line="\r\n").encode("cp1252")),
        "title_rows": ("titled.csv", _text(rows, before="Contacts export\nGenerated 2026-12-01,,\n\n").encode()),
        "trailing_empty": ("sheets.csv", _text(rows, extra=3).encode("utf-8")),
    }
    out = {}
    for key, (name, data) in made.items():
        (tmp_path / name).write_bytes(data)
        out[key] = tmp_path / name
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "Read me"
    book.active.append(["This workbook lists our contacts; see the next sheet."])
    data = book.create_sheet("Contacts")
    for row in [HEADER, *rows]:
        data.append(row)
    book.save(tmp_path / "two_sheets.xlsx")
    out["two_sheets"] = tmp_path / "two_sheets.xlsx"
    return out


def test_guesses():
    assert detect_encoding("Zoë".encode("cp1252") * 20) in ("cp1252", "windows-1252", "cp1250", "latin_1")
    assert detect_encoding("a\tb".encode("utf-16")) == "utf-16"
    assert detect_encoding(b"\xef\xbb\xbfa,b") == "utf-8-sig" and detect_encoding("Zoë".encode()) == "utf-8"
    assert detect_sep(["a;b;c", "1;2,5;3"]) == ";" and detect_sep(["a\tb", "1\t2"]) == "\t"
    assert detect_sep(["a|b|c", "1|2|3"]) == "|" and detect_sep(["just one"]) == ","
    assert detect_header([["Report"], [], ["a", "b", "c"], ["1", "2", "3"]]) == 2
    assert detect_header([["a", "b", ""], ["1", "", ""]]) == 0


def test_every_shape_reads_as_the_clean_csv(tmp_path):
    files = _files(tmp_path)
    clean = af.read_table(files["clean"])
    assert list(clean.columns) == HEADER and len(clean) == len(_rows()) and clean.iloc[-1, 4] == "café; «note»"
    for key, path in files.items():
        frame = af.read_table(path)
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), clean, obj=key)
    assert af.read_table(files["semicolon_cp1252"]).attrs["apollo_input"]["sep"] == ";"
    assert af.read_table(files["two_sheets"]).attrs["apollo_input"]["sheet"] == "Contacts"
    assert af.read_table(files["title_rows"]).attrs["apollo_input"]["header_row"] == 4


def test_overrides_and_typed_errors(tmp_path):
    files = _files(tmp_path)
    assert af.read_table(files["semicolon_cp1252"], sep=",").shape[1] == 1  # the override is taken as given
    with pytest.raises(InputError, match="no sheet 'Nope'.*'Read me', 'Contacts'"):
        af.read_table(files["two_sheets"], sheet="Nope")
    with pytest.raises(InputError, match=r"no sheet has columns enrichment recognises \(sheets seen: 'Sheet'\)"):
        af.read_table(_only_notes(tmp_path))
    with pytest.raises(InputError, match="cannot be read as utf-8|not utf-8 throughout"):
        af.read_table(files["cp1252"], encoding="utf-8")


def _only_notes(tmp_path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["Quarter", "Total"])
    book.active.append(["Q3", "12"])
    book.save(tmp_path / "notes.xlsx")
    return tmp_path / "notes.xlsx"


def test_every_shape_gives_the_same_rows_through_the_cli(tmp_path, capsys):
    files = _files(tmp_path)
    results = {}
    for key, path in files.items():
        out = tmp_path / f"{key}.parquet"
        code = main(["enrich-people", str(path), str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path / "c")])
        err = capsys.readouterr().err
        assert code == 0, (key, err)
        plain = key in ("clean", "utf8_bom")  # read as they are: nothing to say
        assert err == "" if plain else err.startswith(f"read {path.name}:"), (key, err)
        results[key] = pd.read_parquet(out)[[*HEADER, "apollo_status", "person.id"]]
    assert (results["clean"]["apollo_status"] == "matched").sum() >= len(results["clean"]) / 2
    for key, frame in results.items():
        pd.testing.assert_frame_equal(frame, results["clean"], obj=key)


def test_a_file_recognised_by_content_alone_is_estimated_and_run_alike(client, tmp_path):
    """No header names a field: the first chunk's values decide, for estimate_file as for the run."""
    src = tmp_path / "plain.csv"
    src.write_text("Col A,Col B\nAnn Lee,ann@a.example\nBo Chan,bo@b.example\nAnn Lee,ann@a.example\n")
    work = af.estimate_file(src, operation="enrich_people", client=client)
    summary = af.enrich_parquet(src, dst=tmp_path / "out.parquet", client=client, progress=False)
    assert work.unique == summary["unique_inputs"] == 2 and work.rows == summary["rows"] == 3
    assert summary["column_reasons"] == {"Col B": "email: content: 100% of 3 sampled values look like e-mail addresses"}


def test_an_empty_row_inside_the_data_stays_a_row_only_the_tail_goes(tmp_path):
    src = tmp_path / "list.csv"
    src.write_text("Name;Email;;\nAnn Lee;ann@a.example;;\n;;;\nBo Chan;bo@b.example;;\n;;;\n;;;\n")
    frame = af.read_table(src)
    assert list(frame.columns) == ["Name", "Email"] and len(frame) == 3  # never lose a row
    assert frame.iloc[1].isna().all() and frame.attrs["apollo_input"]["dropped_columns"] == 2
