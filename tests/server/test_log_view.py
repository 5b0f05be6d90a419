"""The studio's log rendering, as pure functions: colours, redrawn lines, marks, escaping."""

from __future__ import annotations

from pathlib import Path

from flowyard.server.services import log_view

CSS = Path(log_view.__file__).resolve().parents[1] / "studio" / "static" / "logs.css"


def test_colours_become_classes_and_text_is_escaped() -> None:
    page = log_view.render(b"\x1b[1;31mred <b>&\x1b[0m plain\n", 0, 1, "", at_end=True)
    (line,) = page.lines
    assert line.html == '<span class="f1 sb">red &lt;b&gt;&amp;</span> plain'
    assert line.text == "red <b>& plain"


def test_a_redrawn_progress_bar_shows_its_last_drawing_in_its_colour() -> None:
    page = log_view.render(b"\x1b[32m 10%\r 50%\r100%\x1b[0m\r\n", 0, 7, "", at_end=True)
    assert [(ln.number, ln.html) for ln in page.lines] == [(7, '<span class="f2">100%</span>')]


def test_other_escapes_and_controls_are_dropped() -> None:
    hostile = (
        b"\x1b]8;;javascript:alert(1)\x1b\\link\x1b]8;;\x1b\\ \x1b]0;title\x07"
        b'\x1b[2J\x1b[38;2;255;0;0mtrue\x1b[m \x00\x08\xc2\x9b31mc1 "q"\n'
    )
    (line,) = log_view.render(hostile, 0, 1, "", at_end=True).lines
    assert line.html == 'link <span class="f196">true</span> 31mc1 "q"'


def test_colours_carry_over_to_the_next_page_and_a_partial_line_is_read_again() -> None:
    first = log_view.render(b"\x1b[33mone\ntwo", 0, 1, "", at_end=True)
    assert [ln.text for ln in first.lines] == ["one", "two"] and first.partial
    assert (first.next_offset, first.next_line, first.state) == (9, 2, "38;5;3")
    second = log_view.render(b"two\n", first.next_offset, 2, first.state, at_end=True)
    assert second.lines[0].html == '<span class="f3">two</span>'


def test_lines_are_marked_by_what_they_say() -> None:
    text = (
        b"ok\nWARNING: careful\nERROR cache down\n[flowyard] note\n"
        b"Traceback (most recent call last):\n"
        b'  File "/tmp/x/project/pkg/train.py", line 12, in <module>\n'
        b"    fit()\nValueError: bad\nafter\n"
    )
    lines = log_view.render(text, 0, 1, "", at_end=True).lines
    assert [ln.kind for ln in lines] == ["", "w", "e", "n", "e", "t", "t", "e", ""]
    assert lines[5].frame == ("/tmp/x/project/pkg/train.py", 12)
    paths = ["train.py", "pkg/train.py", "other.py"]
    assert log_view.snapshot_path("/tmp/x/project/pkg/train.py", paths) == "pkg/train.py"
    assert log_view.snapshot_path("/usr/lib/python3/json/decoder.py", paths) is None


def test_search_highlights_without_breaking_entities() -> None:
    wanted = log_view.containing("&")
    spans = wanted("a < b && c > d", "")
    assert spans is not None
    html = log_view._highlighted("a < b && c > d", spans)
    assert html == "a &lt; b <mark>&amp;</mark><mark>&amp;</mark> c &gt; d"
    assert log_view.containing("lt")("a < b", "") is None


def test_the_stylesheet_holds_the_palette() -> None:
    assert CSS.read_text().endswith(log_view.palette_css())


def test_a_page_holds_whole_lines_and_at_most_max_lines() -> None:
    # A page without a newline, not the log's end: one line, and the next page after it.
    page = log_view.render(b"x" * 10, 100, 3, "", at_end=False)
    assert [(ln.number, ln.text) for ln in page.lines] == [(3, "x" * 10)]
    assert (page.next_offset, page.next_line, page.partial) == (110, 4, False)
    many = b"a\n" * (log_view.MAX_LINES + 5)
    page = log_view.render(many, 0, 1, "", at_end=True)
    assert len(page.lines) == log_view.MAX_LINES and not page.partial
    assert (page.next_offset, page.next_line) == (2 * log_view.MAX_LINES, log_view.MAX_LINES + 1)
    assert log_view.skip_to_last(b"1\n2\n3\n4\n", 2) == (4, 2)
    assert log_view.skip_to_last(b"1\n2\n", 5) == (0, 0)


def test_lines_with_a_byte_of_stderr_are_marked_whatever_they_say() -> None:
    data = b"ok\nERROR: on stdout\nwarn on stderr\n\nhalf from stdout, half from stderr\nlast"
    # Absolute offsets: the page is read from offset 100.
    third = data.index(b"warn")
    empty = data.index(b"\n\n") + 1
    mixed = data.index(b"half from stderr")
    stderr = [
        (100 + third, 100 + empty),  # the third line, its newline included
        (100 + empty, 100 + empty + 1),  # an empty line: its newline only
        (100 + mixed, 100 + mixed + 4),
        (100 + len(data) - 2, 100 + len(data)),  # in the last line, not ended yet
    ]
    page = log_view.render(data, 100, 5, "", at_end=False, stderr=stderr)
    assert [(ln.text, ln.kind, ln.stderr) for ln in page.lines] == [
        ("ok", "", False),
        ("ERROR: on stdout", "e", False),
        ("warn on stderr", "", True),
        ("", "", True),
        ("half from stdout, half from stderr", "", True),
        ("last", "", True),
    ]
    # Old logs (no ranges) and a line only touching a range's end are stdout.
    assert not any(ln.stderr for ln in log_view.render(data, 0, 1, "", True).lines)
    touching = log_view.render(b"a\nb\n", 0, 1, "", True, [(0, 2)]).lines
    assert [ln.stderr for ln in touching] == [True, False]
