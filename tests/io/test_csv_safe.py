"""The one CSV writer (medimg.io.csv_safe): formula-like cells escaped (OWASP), numbers kept (issue 12, item 13)."""

import csv
import io

from medimg.io.csv_safe import SafeDictWriter, escape_cell, rows_to_text, safe_writer


def test_formula_cells_get_a_quote_and_numbers_stay_numbers():
    for cell in ("=1+2", "+A1", "-A1", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://e.x\")", "-", "+"):
        assert escape_cell(cell) == "'" + cell
    for cell in ("-3.5", "+1e-3", "-inf", "1", "case_001", "", "a=b"):
        assert escape_cell(cell) == cell
    assert escape_cell(-3.5) == -3.5 and escape_cell(None) == ""


def test_writers_round_trip_through_the_csv_module():
    text = rows_to_text([{"case": "=cmd|' /C calc'!A0", "value": -2.0}, {"case": "ok", "value": None}],
                        ["case", "value"])
    rows = list(csv.DictReader(text.splitlines()))
    assert rows == [{"case": "'=cmd|' /C calc'!A0", "value": "-2.0"}, {"case": "ok", "value": ""}]
    buf = io.StringIO()
    w = safe_writer(buf, lineterminator="\n")
    w.writerow(["@x", -1, "-1"])
    buf2 = io.StringIO()
    d = SafeDictWriter(buf2, fieldnames=["a"], lineterminator="\n")
    d.writeheader()
    d.writerow({"a": "+x"})
    assert buf.getvalue() == "'@x,-1,-1\n" and buf2.getvalue() == "a\n'+x\n"


def test_measurement_tables_escape_formula_cells(tmp_path):
    """measure/analyze's measurements.csv goes through the same writer (issue 12, item 13)."""
    from medimg.measure import to_csv

    out = tmp_path / "m.csv"
    to_csv([{"structure": "=HYPERLINK(\"http://x\")", "volume_ml": -1.5, "label": 1}], out)
    text = out.read_text()
    assert "'=HYPERLINK" in text
    assert "-1.5" in text and "'-1.5" not in text  # numbers stay numbers
    assert "\n=" not in text and ",=" not in text
