"""A job's log as the studio shows it: rendered on the server, a page of whole lines at a time.

Job output is hostile input: every byte of text is HTML-escaped, colours become CSS classes
(``static/logs.css``; the studio's Content-Security-Policy allows no inline style), and every
escape sequence other than a colour (cursor moves, window titles, hyperlinks, private modes) is
dropped, as are control characters. A carriage return without a newline (a progress bar redrawn
in place) shows only what was drawn last. Each line is numbered, with an ``#L<n>`` anchor, and
marked as an error, a warning, part of a Python traceback, or a note of Flowyard's own, by what
it says; and, apart from that, as written to stderr.

The log is stored as one stream of bytes, the job's stdout and stderr in the order the runner
read them, with the byte ranges stderr wrote beside it (flowyard/log_ranges.py): a line with a
byte in one is a stderr line.

Search reads the whole stored log, a page at a time, not the tail a browser has loaded; a
request scans at most :data:`SCAN_BUDGET` bytes and says where to go on from.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape

from sqlalchemy.orm import Session

from flowyard.log_ranges import Marks, Range
from flowyard.server.services import jobs as job_service

# One page of the stored log per read (the log API's page).
PAGE = 1024 * 1024
# The most bytes one search or line lookup reads before answering with where to go on from.
SCAN_BUDGET = 64 * 1024 * 1024
MAX_MATCHES = 200
MAX_QUERY = 200
# The most lines a page holds (a MiB of short lines would be a hundred thousand).
MAX_LINES = 20_000

# Escape sequences: CSI (SGR is the one kept: final byte "m"), OSC (to BEL or ST), DCS/SOS/PM/APC
# strings, two-byte escapes; then every other control character but the tab.
_ESCAPES = re.compile(
    r"\x1b\[(?P<params>[0-9;:<=>?]*)[ -/]*(?P<final>[@-~])"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
)
_ERROR = re.compile(
    r"\b(?:ERROR|CRITICAL|FATAL)\b|^Traceback \(most recent call last\):"
    r"|^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)(?::|$)"
)
_WARNING = re.compile(r"\b(?:WARNING|WARN)\b|\b[A-Z]\w*Warning:")
_FRAME = re.compile(r'^\s+File "(?P<path>[^"]+)", line (?P<line>\d+)')
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Cheap tests before the patterns: most lines have none of these words.
_ERROR_WORDS = (
    "ERROR",
    "CRITICAL",
    "FATAL",
    "Traceback",
    "Error",
    "Exception",
    "Exit",
    "Interrupt",
)
_WARNING_WORDS = ("WARN", "Warning")
_STATE = re.compile(r"^[0-9;]{0,64}$")
# SGR codes that set or clear one attribute.
_FLAGS: dict[int, tuple[str, bool]] = {
    1: ("bold", True),
    2: ("dim", True),
    3: ("italic", True),
    4: ("underline", True),
    23: ("italic", False),
    24: ("underline", False),
}
BASIC = 16  # the first 16 colours: the terminal's own, by name


@dataclass
class Style:
    """The SGR attributes in force; carried from one page of the log to the next."""

    fg: int | None = None
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False

    def apply(self, params: str) -> None:
        codes = _codes(params)
        i = 0
        while i < len(codes):
            c = codes[i]
            if c in (38, 48):
                colour, used = _extended(codes[i + 1 :])
                setattr(self, "fg" if c == 38 else "bg", colour)
                i += used
            elif c == 0:
                self.__init__()  # type: ignore[misc]
            elif c in _FLAGS:
                setattr(self, *_FLAGS[c])
            elif 30 <= c <= 37 or 90 <= c <= 97:
                self.fg = c - 30 if c < 90 else c - 90 + 8
            elif 40 <= c <= 47 or 100 <= c <= 107:
                self.bg = c - 40 if c < 100 else c - 100 + 8
            elif c in (22, 39, 49):
                for name in {22: ("bold", "dim"), 39: ("fg",), 49: ("bg",)}[c]:
                    setattr(self, name, False if c == 22 else None)
            i += 1

    def classes(self) -> str:
        return _classes(self.fg, self.bg, self.bold, self.dim, self.italic, self.underline)

    def encode(self) -> str:
        """As an SGR parameter string, to hand back with the next page."""
        codes = [
            code
            for code, on in ((1, self.bold), (2, self.dim), (3, self.italic), (4, self.underline))
            if on
        ]
        parts = [str(c) for c in codes]
        if self.fg is not None:
            parts.append(f"38;5;{self.fg}")
        if self.bg is not None:
            parts.append(f"48;5;{self.bg}")
        return ";".join(parts)

    @classmethod
    def decode(cls, state: str) -> Style:
        style = cls()
        if state and _STATE.match(state):
            style.apply(state)
        return style


@functools.lru_cache(maxsize=1024)
def _codes(params: str) -> tuple[int, ...]:
    return tuple(int(c) if c.isdigit() else 0 for c in re.split("[;:]", params)) if params else (0,)


@functools.lru_cache(maxsize=4096)
def _classes(
    fg: int | None, bg: int | None, bold: bool, dim: bool, italic: bool, underline: bool
) -> str:
    names = []
    if fg is not None:
        names.append(f"f{fg}")
    if bg is not None:
        names.append(f"b{bg}")
    names.extend(
        name for name, on in (("sb", bold), ("sd", dim), ("si", italic), ("su", underline)) if on
    )
    return " ".join(names)


def _extended(rest: tuple[int, ...]) -> tuple[int | None, int]:
    """A 256-colour (``5;N``) or true-colour (``2;R;G;B``) colour, as a palette index; and how
    many codes it took."""
    if len(rest) >= 2 and rest[0] == 5:
        return (rest[1] if 0 <= rest[1] <= 255 else None), 2
    if len(rest) >= 4 and rest[0] == 2:
        r, g, b = (max(0, min(255, v)) for v in rest[1:4])
        return nearest(r, g, b), 4
    return None, len(rest)


_CUBE = (0, 95, 135, 175, 215, 255)


def palette(index: int) -> tuple[int, int, int]:
    """xterm's 256 colours (the first 16 as VS Code's terminal draws them)."""
    basic = [
        (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16),
        (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229),
        (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
        (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255),
    ]  # fmt: skip
    if index < BASIC:
        return basic[index]
    if index < 232:
        n = index - 16
        return _CUBE[n // 36], _CUBE[(n // 6) % 6], _CUBE[n % 6]
    grey = 8 + (index - 232) * 10
    return grey, grey, grey


def nearest(r: int, g: int, b: int) -> int:
    """The 256-colour palette's closest entry to a true colour (the studio styles by class)."""

    def step(v: int) -> int:
        return min(range(6), key=lambda i: abs(_CUBE[i] - v))

    cube = 16 + 36 * step(r) + 6 * step(g) + step(b)
    grey = 232 + min(23, max(0, round((r + g + b) / 3 - 8) // 10))
    return min(
        (cube, grey),
        key=lambda i: sum((a - c) ** 2 for a, c in zip(palette(i), (r, g, b), strict=True)),
    )


def palette_css() -> str:
    """``static/logs.css``'s colour classes (the file holds this and is checked against it)."""
    lines = []
    for i in range(256):
        hex_colour = "#{:02x}{:02x}{:02x}".format(*palette(i))
        lines.append(f".log .f{i} {{ color: {hex_colour}; }}")
        lines.append(f".log .b{i} {{ background: {hex_colour}; }}")
    return "\n".join(lines) + "\n"


@dataclass
class Line:
    number: int
    # Byte offset of the line's first byte in the stored log.
    offset: int
    text: str  # what a terminal would show, no escapes
    html: str
    kind: str  # "" | "e" (error) | "w" (warning) | "t" (traceback) | "n" (Flowyard's own)
    frame: tuple[str, int] | None = None
    stderr: bool = False  # written (in part) by the job's stderr


def _visible(raw: str, style: Style) -> tuple[str, list[tuple[str, str]]]:
    """One line's text as a terminal shows it, and its runs of (classes, text); ``style`` moves
    along with the line's colour changes."""
    raw = raw.rstrip("\r")
    cut = raw.rfind("\r")
    if cut >= 0:
        # Redrawn in place: only the last drawing shows, in the colours set before it.
        for m in _ESCAPES.finditer(raw, 0, cut):
            if m.group("final") == "m":
                style.apply(m.group("params"))
        raw = raw[cut + 1 :]
    if not _CONTROL.search(raw):
        return raw, [(style.classes(), raw)] if raw else []
    # Most coloured lines hold colour changes only: split on them in one call.
    parts = _SGR.split(raw)
    if not any(_CONTROL.search(text) for text in parts[::2]):
        runs = [(style.classes(), parts[0])] if parts[0] else []
        for i in range(1, len(parts), 2):
            style.apply(parts[i])
            if parts[i + 1]:
                runs.append((style.classes(), parts[i + 1]))
        return "".join(parts[::2]), runs
    runs = []
    at = 0
    for m in _ESCAPES.finditer(raw):
        if m.start() > at:
            runs.append((style.classes(), raw[at : m.start()]))
        if m.group("final") == "m":
            style.apply(m.group("params"))
        at = m.end()
    if at < len(raw):
        runs.append((style.classes(), raw[at:]))
    return "".join(text for _, text in runs), runs


def _runs_html(runs: list[tuple[str, str]]) -> str:
    return "".join(
        f'<span class="{classes}">{escape(text, quote=False)}</span>'
        if classes
        else escape(text, quote=False)
        for classes, text in runs
    )


def _kind(text: str, in_traceback: bool) -> str:
    if text.startswith("[flowyard] "):
        return "n"
    if any(w in text for w in _ERROR_WORDS) and _ERROR.search(text):
        return "e"
    if in_traceback:
        return "t"
    if any(w in text for w in _WARNING_WORDS) and _WARNING.search(text):
        return "w"
    return ""


@dataclass
class Rendered:
    lines: list[Line] = field(default_factory=list)
    # Where the next page starts: after the last whole line (a trailing line without its newline
    # yet is shown, and read again next time, as a progress bar is redrawn).
    next_offset: int = 0
    next_line: int = 1
    state: str = ""
    partial: bool = False


def render(
    data: bytes,
    offset: int,
    line: int,
    state: str,
    at_end: bool,
    stderr: list[Range] | None = None,
) -> Rendered:
    """Whole lines of ``data`` (read from ``offset``, whose first line is number ``line``), at
    most :data:`MAX_LINES` of them; those with a byte in ``stderr`` (absolute offsets) marked."""
    marks = Marks(stderr or ())
    style = Style.decode(state)
    out = Rendered(next_offset=offset, next_line=line, state=style.encode())
    end = data.rfind(b"\n") + 1
    partial = b""
    whole = data[:end].split(b"\n")[:-1]
    if end < len(data):
        if end == 0 and not at_end:
            whole = [data]  # a page with no newline at all: shown as one line, not waited on
        else:
            partial = data[end:]
    if len(whole) > MAX_LINES:
        whole, partial = whole[:MAX_LINES], b""
    in_traceback = False
    pos = offset
    for number, raw in enumerate(whole, start=line):
        out.lines.append(_line(number, pos, raw, style, in_traceback))
        # Its newline too: a line stderr only ended (an empty one) is stderr's.
        out.lines[-1].stderr = marks.hit(pos, pos + len(raw) + 1)
        in_traceback = _traceback_state(out.lines[-1], in_traceback)
        pos = min(pos + len(raw) + 1, offset + len(data))
    out.next_offset = pos
    out.next_line = line + len(whole)
    out.state = style.encode()
    if partial:
        # Rendered with a copy of the style: its colours are read again with the rest of it.
        out.lines.append(_line(out.next_line, pos, partial, Style.decode(out.state), in_traceback))
        out.lines[-1].stderr = marks.hit(pos, pos + len(partial))
        out.partial = True
    return out


def skip_to_last(data: bytes, count: int) -> tuple[int, int]:
    """How many bytes and lines to skip so that ``data`` holds its last ``count`` lines."""
    lines = data.count(b"\n")
    skip = lines - count
    at = 0
    for _ in range(max(0, skip)):
        at = data.index(b"\n", at) + 1
    return at, max(0, skip)


def _line(number: int, offset: int, raw: bytes, style: Style, in_traceback: bool) -> Line:
    text, runs = _visible(raw.decode("utf-8", errors="replace"), style)
    kind = _kind(text, in_traceback)
    frame = None
    if m := _FRAME.match(text):
        frame = (m.group("path"), int(m.group("line")))
    return Line(number, offset, text, _runs_html(runs), kind, frame)


def _traceback_state(line: Line, in_traceback: bool) -> bool:
    if line.text.startswith("Traceback (most recent call last):"):
        return True
    if in_traceback and line.text and not line.text.startswith((" ", "\t")):
        return False  # the exception's own line ends it
    return in_traceback


def read_lines(
    session: Session, job_id: str, offset: int, line: int, state: str, size: int
) -> Rendered:
    """A page of the log from ``offset`` as rendered lines."""
    data, stderr = job_service.read_log_marked(session, job_id, offset, PAGE)
    return render(data, offset, line, state, offset + len(data) >= size, stderr)


def _scan(
    session: Session, job_id: str, offset: int, line: int, size: int
) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, offset, raw bytes, whether stderr wrote it) of each whole line from
    ``offset``, reading at most :data:`SCAN_BUDGET` bytes; the last line of the log counts even
    without its newline."""
    budget = SCAN_BUDGET
    carry = b""
    start = offset
    marks = Marks()
    while offset < size and budget > 0:
        data, stderr = job_service.read_log_marked(session, job_id, offset, PAGE)
        if not data:
            break
        marks.extend(stderr)
        offset += len(data)
        budget -= len(data)
        data = carry + data
        pieces = data.split(b"\n")
        carry = pieces.pop()
        for raw in pieces:
            yield line, start, raw, marks.hit(start, start + len(raw) + 1)
            start += len(raw) + 1
            line += 1
    if carry and offset >= size:
        yield line, start, carry, marks.hit(start, start + len(carry))


@dataclass
class Found:
    matches: list[Line]
    # Where a further search goes on from (None: the whole log was read).
    next_offset: int | None
    next_line: int | None
    scanned: int


def search(
    session: Session,
    job_id: str,
    size: int,
    wanted: Callable[[str, str], list[tuple[int, int]] | None],
    offset: int = 0,
    line: int = 1,
    limit: int = MAX_MATCHES,
    only_stderr: bool = False,
) -> Found:
    """Lines whose visible text ``wanted`` accepts (it answers the spans to highlight, or None),
    from ``offset`` on, with ``only_stderr`` those written to stderr only; at most ``limit`` of
    them and :data:`SCAN_BUDGET` bytes read."""
    matches: list[Line] = []
    in_traceback = False
    last_end, last_number = offset, line - 1
    next_at: tuple[int, int] | None = None
    for number, at, raw, stderr in _scan(session, job_id, offset, line, size):
        last_number = number
        text, _runs = _visible(raw.decode("utf-8", errors="replace"), Style())
        kind = _kind(text, in_traceback)
        line_info = Line(number, at, text, "", kind, stderr=stderr)
        in_traceback = _traceback_state(line_info, in_traceback)
        last_end = at + len(raw) + 1
        if only_stderr and not stderr:
            continue
        spans = wanted(text, kind)
        if spans is None:
            continue
        line_info.html = _highlighted(text, spans)
        matches.append(line_info)
        if len(matches) >= limit:
            next_at = (last_end, number + 1)
            break
    else:
        if last_end < size:
            next_at = (last_end, last_number + 1)
    if next_at is not None and next_at[0] >= size:
        next_at = None
    return Found(
        matches=matches,
        next_offset=next_at[0] if next_at else None,
        next_line=next_at[1] if next_at else None,
        scanned=min(last_end, size) - offset,
    )


def containing(term: str) -> Callable[[str, str], list[tuple[int, int]] | None]:
    """Case-insensitive plain-text match (no pattern syntax: what is typed is what is found)."""
    needle = term.lower()

    def wanted(text: str, _kind: str) -> list[tuple[int, int]] | None:
        folded = text.lower()
        spans = []
        at = folded.find(needle)
        while at >= 0:
            spans.append((at, at + len(needle)))
            at = folded.find(needle, at + len(needle))
        return spans or None

    return wanted


def errors(text: str, kind: str) -> list[tuple[int, int]] | None:
    return [] if kind == "e" else None


def every(text: str, kind: str) -> list[tuple[int, int]] | None:
    return []


def _highlighted(text: str, spans: list[tuple[int, int]]) -> str:
    """The text escaped, with each span in ``<mark>``: escaped piece by piece, so a search for
    ``&`` or ``lt`` never lands inside an entity."""
    parts = []
    at = 0
    for start, end in spans:
        parts.append(escape(text[at:start], quote=False))
        parts.append(f"<mark>{escape(text[start:end], quote=False)}</mark>")
        at = end
    parts.append(escape(text[at:], quote=False))
    return "".join(parts)


def line_offset(session: Session, job_id: str, size: int, number: int) -> tuple[int, int]:
    """The byte offset where line ``number`` starts, and its number (the last line's, for a
    number past the end)."""
    last = (0, 1)
    for line, at, _raw, _stderr in _scan(session, job_id, 0, 1, size):
        last = (at, line)
        if line >= number:
            break
    return last


def tail_start(session: Session, job_id: str, size: int, tail: int) -> tuple[int, int]:
    """Where the last ``tail`` bytes' first whole line starts, and its number: newlines are
    counted page by page, without rendering."""
    target = max(0, size - tail)
    offset, newlines, before = 0, 0, b"\n"
    while offset < target:
        data = job_service.read_log(session, job_id, offset, min(PAGE, target - offset))
        if not data:
            return offset, newlines + 1
        newlines += data.count(b"\n")
        offset += len(data)
        before = data[-1:]
    if before == b"\n":
        return target, newlines + 1
    # Mid-line: start at the next line (or there, if the line is longer than a page).
    nl = job_service.read_log(session, job_id, target, PAGE).find(b"\n")
    return (target, newlines + 1) if nl < 0 else (target + nl + 1, newlines + 2)


def last_lines(session: Session, job_id: str, size: int, count: int = 20) -> list[str]:
    """The log's last ``count`` lines of the job's own output (not Flowyard's notes), as text:
    those it wrote to stderr, if it wrote any there."""
    start = max(0, size - 64 * 1024)
    data, stderr = job_service.read_log_marked(session, job_id, start, 64 * 1024)
    rendered = render(data, start, 1, "", True, stderr)
    lines = [ln for ln in rendered.lines if ln.kind != "n"]
    if start > 0 and lines:
        lines = lines[1:]  # the first may be cut
    if any(ln.stderr for ln in lines):
        lines = [ln for ln in lines if ln.stderr]
    own = [ln.text for ln in lines]
    while own and not own[-1].strip():
        own.pop()
    return own[-count:]


def snapshot_path(frame_path: str, manifest_paths: list[str]) -> str | None:
    """The snapshot file a traceback frame's path names: the longest snapshot path that the
    frame's path ends with, on a folder boundary (the runner runs the project from a folder of
    its own, so frames name ``/…/project/train.py`` for the snapshot's ``train.py``)."""
    frame = frame_path.replace("\\", "/")
    best = None
    for path in manifest_paths:
        if (frame == path or frame.endswith("/" + path)) and (
            best is None or len(path) > len(best)
        ):
            best = path
    return best


@dataclass
class TracebackLine:
    text: str
    path: str | None = None  # the snapshot file of a frame
    line: int | None = None


def traceback_lines(traceback: str, manifest_paths: list[str]) -> list[TracebackLine]:
    """A traceback's lines, each frame in the job's own code with its snapshot file and line."""
    out = []
    for text in traceback.splitlines():
        m = _FRAME.match(text)
        path = snapshot_path(m.group("path"), manifest_paths) if m else None
        out.append(TracebackLine(text, path, int(m.group("line")) if m and path else None))
    return out
