"""Streaming CSV reading for the importers: bytes -> validated text records -> rows with typed accessors whose
errors name the file, line and column. The file is never read whole (the csv module over a text stream)."""
from __future__ import annotations

import codecs
import csv
import datetime as dt
import decimal
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..fields import EARLIEST, MAX_ID_LENGTH, MAX_RESPONSE_TIME_MS
from ..validation import ReviewFields, ReviewValidationError, check_time, normalise_id, validate_review

INT32_MAX = 2**31 - 1  # a file's 32-bit integer columns (session counts, Anki's ease factor)
HEAD_BYTES = 1 << 16  # the part of the file read first: it names the import batch and shows the encoding
# The longest header read (characters, blank lines before it aside): a real header is a few hundred; a "header" of
# millions of commas would otherwise become millions of column names, ~85 times its size in memory, in the request.
HEADER_MAX_CHARS = 1 << 16
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")  # a line as the csv reader counts them (a text stream with newline="")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DELIMITER_NAMES = {";": "semicolon", "\t": "tab", "|": "bar"}


class ImportFileError(ValueError):
    """A file that cannot be imported (nothing was stored); the message names the file, line and column.
    ``field``: the import's input to change instead of the file ("format", "learner"), None for the file itself."""

    def __init__(self, filename: str, message: str, *, line: int | None = None, column: str | None = None,
                 field: str | None = None):
        self.filename, self.line, self.column, self.detail, self.field = filename, line, column, message, field
        where = "".join([f", line {line}" if line else "", f", column {column}" if column else ""])
        super().__init__(f"{filename}{where}: {message}")


@dataclass(frozen=True)
class FileReview:
    """One row read as a review: the validated review (curriculum.reviews.validation), where it is in the file,
    the name its concept gets when the import creates it ("" keeps the key), and whether its duration was negative
    (stored without one: see duration_ms)."""

    line: int
    fields: ReviewFields
    concept_name: str = ""
    negative_duration: bool = False


class Row:
    """One CSV row with typed, validating accessors whose errors name the line and column."""

    def __init__(self, *, filename: str, line: int, columns: dict[str, int], values: list[str],
                 review_columns: Mapping[str, str] | None = None, known_keys: frozenset[str] | set[str] = frozenset()):
        self.filename, self.line, self._columns, self._values = filename, line, columns, values
        self._review_columns = review_columns or {}  # review field -> the column it comes from
        self._known_keys = known_keys  # the curriculum's concept keys (see identifier)

    def error(self, column: str, message: str) -> ImportFileError:
        return ImportFileError(self.filename, message, line=self.line, column=column)

    def review(self, *, concept_name: str = "", negative_duration: bool = False, **values: Any) -> FileReview:
        """The row as a review: ``values`` by the review's field names (curriculum.reviews.fields), validated by
        the one validation (validate_review). ImportFileError naming this line and the column the first field at
        fault came from (the format's ``columns``)."""
        try:
            fields = validate_review(**values)
        except ReviewValidationError as exc:
            field, message = exc.errors[0]["field"], exc.errors[0]["message"]
            raise self.error(self._review_columns.get(field, field), message) from None
        return FileReview(self.line, fields, concept_name, negative_duration)

    def text(self, column: str, *, required: bool = True, max_length: int = MAX_ID_LENGTH) -> str:
        index = self._columns.get(column)
        value = self._values[index].strip() if index is not None else ""
        if required and not value:
            raise self.error(column, "expected a value, got an empty field")
        if len(value) > max_length:
            raise self.error(column, f"expected at most {max_length} characters, got {len(value)}")
        return value

    def integer(self, column: str, *, low: int, high: int, required: bool = True, expected: str = "",
                exact: str = "") -> int | None:
        """An integer from ``low`` to ``high`` written in decimal digits (``expected`` describes the range in the
        error when given). ``exact`` names what an id or a time in milliseconds is ("a time in milliseconds"): a number a spreadsheet rewrote
        (spreadsheet_rewritten) is refused naming the line and column. Elsewhere (small counts, grades, durations)
        an integral decimal such as "1234.0" (how pandas writes an integer column with missing values) is read
        exactly, through Decimal, never through a float."""
        value = self.text(column, required=required)
        if not value:
            return None
        expected = expected or f"{low}-{high}"
        if _DIGITS.fullmatch(value):
            number = int(value)
        else:
            if exact and spreadsheet_rewritten(value):
                raise self.error(column, spreadsheet_message(value, exact))
            number = _integral_decimal(value)
            if number is None:
                raise self.error(column, f"expected an integer {expected}, got {value!r}") from None
        if not low <= number <= high:
            raise self.error(column, f"expected {expected}, got {value!r}")
        return number

    def duration_ms(self, column: str) -> tuple[int | None, bool]:
        """A review's duration in milliseconds (optional) and whether the file's was negative.

        A negative duration is the clock going back while the card was shown (a daylight-saving change, a clock
        sync: a known artefact of real Anki collections, whose ``time`` is the difference of two wall-clock
        readings). A duration does not enter the memory model, so such a review is kept, stored without a
        duration (``response_time_ms`` NULL: unknown, not 0, which would claim an instant answer), and counted
        in the import's summary. Above MAX_RESPONSE_TIME_MS it is refused as before."""
        value = self.integer(column, low=-(2**63), high=MAX_RESPONSE_TIME_MS, required=False,
                             expected=f"at most {MAX_RESPONSE_TIME_MS} milliseconds")
        if value is not None and value < 0:
            return None, True
        return value, False

    def identifier(self, column: str) -> str:
        """An id column whose ids are integers in the source (Anki's card id, the FSRS optimizer's card_id): the
        text as written, refused naming the line and column when a spreadsheet rewrote it (``1.69E+12``,
        ``1690000000000.0``, ``1,690,000,000,000``): several ids would otherwise become one.

        A value that is, exactly as written (untrimmed, in NFC), a concept key the curriculum already has is that
        concept, read as is: an export (curriculum.reviews.export) imported back keeps keys such as ``2.0``,
        ``1,000`` or `` padded`` that the spreadsheet rule would refuse or trimming would change."""
        index = self._columns.get(column)
        if index is not None and self._known_keys and normalise_id(self._values[index]) in self._known_keys:
            return self._values[index]
        value = self.text(column)
        if spreadsheet_rewritten(value):
            raise self.error(column, spreadsheet_message(value, "an id"))
        return value

    def epoch_time(self, column: str, *, unit_ms: int, iso: bool = False) -> dt.datetime:
        """A time from a number in units of ``unit_ms`` ms since 1970 (or ISO 8601 with a zone when ``iso``),
        bounded as every review time is (validation.check_time); a number out of bounds gets "wrong unit?".

        Milliseconds are read as decimal digits only (int, never float: a float holds 15-17 significant digits
        and a spreadsheet's ``1.69E+12`` holds 3); seconds may carry a decimal fraction, read exactly (Decimal).
        A number a spreadsheet rewrote (spreadsheet_rewritten) is refused naming the line and column."""
        value = self.text(column)
        unit = "milliseconds" if unit_ms == 1 else "seconds"
        if spreadsheet_rewritten(value, fraction_ok=unit_ms != 1):
            raise self.error(column, spreadsheet_message(value, f"a time in {unit}"))
        number: decimal.Decimal | None = None
        if _DIGITS.fullmatch(value):
            number = decimal.Decimal(int(value))
        elif unit_ms != 1 and _DECIMAL.fullmatch(value):
            number = decimal.Decimal(value)
        if number is not None:
            micros = number * unit_ms * 1000
            try:
                when = EPOCH + dt.timedelta(microseconds=int(micros))
                shown = f" ({when:%Y-%m-%d})"
            except (OverflowError, ValueError):  # e.g. milliseconds read as seconds: past year 9999
                when, shown = None, ""
            if when is None or not _within_bounds(when):
                raise self.error(
                    column, f"expected {unit} since 1970, from {EARLIEST.year} to now, got {value!r}{shown}: wrong unit?")
            return check_time(when)
        if not iso:
            raise self.error(column, f"expected {unit} since 1970, got {value!r}")
        try:
            return check_time(value)
        except ReviewValidationError as exc:
            message = exc.errors[0]["message"]
            if message.startswith("expected an ISO 8601"):
                message = f"expected {unit} since 1970 or an ISO 8601 date-time, got {value!r}"
            elif "no zone" in message:
                message = f"the date-time {value!r} has no zone; add one, e.g. 'Z' or '+02:00'"
            raise self.error(column, message) from None


# ------------------------------------------------------------------------------- spreadsheet-rewritten numbers
_DIGITS = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+\.[0-9]+")
_EXPONENT = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")  # 1.69E+12, 1,69E+12 (a decimal comma), 1e12
_INTEGRAL_FRACTION = re.compile(r"[+-]?[0-9]+[.,]0+")  # 1690000000000.0
# digit groups of three: 1,690,000,000,000 / 1.690.000.000.000 / 1 690 000 000 000 (also no-break and thin spaces)
# / 1'690'000'000'000 (Swiss)
_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?:([,. \u00a0\u202f'])[0-9]{3})(?:\1[0-9]{3})*")


def spreadsheet_rewritten(value: str, *, fraction_ok: bool = False) -> bool:
    """Whether ``value`` is an integer as a spreadsheet writes it back when saving a CSV (Excel, LibreOffice,
    Numbers): scientific notation (``1.69E+12``, ``1e12``), a zero fraction (``1690000000000.0``) or digit groups
    (``1,690,000,000,000``, ``1.690.000``, ``1 690 000``, ``1'690'000``). Such an id or time has lost digits or
    may have, so it is refused rather than read; ``fraction_ok`` leaves ``123.0`` and ``1.690`` alone (a time in
    seconds may carry a decimal fraction). Detection only: the value is never converted here."""
    if _EXPONENT.fullmatch(value):
        return True
    if _GROUPED.fullmatch(value) and not (fraction_ok and _DECIMAL.fullmatch(value)):
        return True
    return not fraction_ok and bool(_INTEGRAL_FRACTION.fullmatch(value))


def spreadsheet_message(value: str, what: str) -> str:
    return (f"expected {what} written in digits, got {value!r}: a spreadsheet rewrote this number (scientific "
            "notation, a decimal part or digit groups) and its exact value is lost; export the file again from its "
            "source, or format the column as text before saving")


def _integral_decimal(value: str) -> int | None:
    """``value`` as an integer when it is a plain decimal with a zero fraction ("1234.0"), read exactly."""
    if not _DECIMAL.fullmatch(value):
        return None
    number = decimal.Decimal(value)
    return int(number) if number == number.to_integral_value() else None


def _within_bounds(when: dt.datetime) -> bool:
    try:
        check_time(when)
    except ReviewValidationError:
        return False
    return True


@dataclass(frozen=True)
class ReviewFileFormat:
    """A file format: its columns, where its learners come from, and how a row becomes a review."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    learner_column: str | None  # None: the whole file is one learner's, named by --learner
    # row, learner, context (from prescan) -> a review (Row.review), or None for a row that is not a memory event
    # (skipped)
    parse: Callable[[Row, str, object], FileReview | None]
    columns: dict[str, str]  # review field (validation's names) -> the column it comes from, for errors
    # a first pass over the rows (e.g. Anki's card resets), whose result every row is parsed with
    prescan: Callable[[Iterator[Row]], object] | None = None

    def describe(self) -> str:
        optional = f" (optional: {', '.join(self.optional)})" if self.optional else ""
        return f"{self.name}: {', '.join(self.required)}{optional}"


# -------------------------------------------------------------------------------------------- reading
class CountingReader(io.RawIOBase):
    """The source's bytes, after the already-read ``head``, counting what has been read (for progress)."""

    def __init__(self, source: BinaryIO, head: bytes):
        self._source, self._head, self.bytes_read = source, memoryview(head), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
        else:
            data = self._source.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self.bytes_read += n
        return n


def size_of(fileobj: BinaryIO) -> int | None:
    size = getattr(fileobj, "size", None)
    if isinstance(size, int):
        return size
    try:
        return os.fstat(fileobj.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def check_encoding(head: bytes, *, filename: str) -> None:
    """Refuse text that is not UTF-8 before it is read as garbage: UTF-16/32 (a byte-order mark, or the NUL
    bytes every ASCII character has in UTF-16) gets a message naming the encoding."""
    boms = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
            (codecs.BOM_UTF16_BE, "UTF-16"))
    found = next((name for bom, name in boms if head.startswith(bom)), None)
    first_line = head.split(b"\n", 1)[0]
    if found is None and first_line and first_line.count(b"\x00") * 3 >= len(first_line):
        found = "UTF-16"
    if found:
        raise ImportFileError(
            filename, f"the file is {found} text; expected UTF-8: save or export it as UTF-8 (CSV UTF-8)", line=1,
        )


def check_utf8(head: bytes, *, filename: str) -> None:
    """Refuse a file whose first bytes ``head`` (the start of the file, at most HEAD_BYTES) are not UTF-8, naming
    the line of the first bad byte: text in another encoding (Latin-1, Windows-1252) would be refused by the import
    job anyway. A multibyte character cut by the end of ``head`` is not an error (the file goes on)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        line = len(_LINE_BREAK.findall(head, 0, exc.start)) + 1
        raise ImportFileError(
            filename, f"not UTF-8 text (byte 0x{head[exc.start]:02X}): the file looks saved in another encoding "
                      "(Latin-1 or Windows-1252?); save or export it as UTF-8 (CSV UTF-8)", line=line,
        ) from None


class _HeaderTooLong(Exception):
    """The header went past HEADER_MAX_CHARS while it was read (CsvRows.read_header says what was expected)."""


class CsvRows:
    """A CSV stream from a binary file: its header (checked against the formats) and its rows."""

    def __init__(self, fileobj: BinaryIO, *, filename: str, head: bytes):
        self.filename = filename
        self.counter = CountingReader(fileobj, head)
        self.text = io.TextIOWrapper(
            io.BufferedReader(self.counter, HEAD_BYTES), encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        self._header_budget: int | None = HEADER_MAX_CHARS  # characters the header may still take; None once read
        self._header_text = ""  # the header's text as read (for the delimiter it may show when it is not CSV)
        self.reader = csv.reader(self._lines(), strict=True)
        self.header: list[str] = []
        self.line = 0  # the line the record being read (or last read) starts on: a quoted field may span lines

    def close(self) -> None:
        self.text.detach()  # leave the caller's file open

    def _lines(self) -> Iterator[str]:
        """The text's lines for the csv reader; until the header is read, at most HEADER_MAX_CHARS of them (raises
        _HeaderTooLong), so that a header is never read whole whatever its length."""
        while self._header_budget is not None:
            line = self.text.readline(self._header_budget + 1)
            if not line:
                return
            self._header_budget -= len(line)
            if self._header_budget < 0:
                raise _HeaderTooLong()
            self._header_text += line
            yield line
        for line in self.text:  # not "yield from": closing this generator would close the caller's file
            yield line

    def records(self) -> Iterator[list[str]]:
        """The CSV records, blank lines left out (``self.line``: the line each starts on); bytes that are not UTF-8
        arrive as lone surrogates (checked per row)."""
        while True:
            self.line = self.reader.line_num + 1
            try:
                values = next(self.reader)
            except StopIteration:
                return
            except csv.Error as exc:
                where = f" (reading line {self.reader.line_num})" if self.reader.line_num > self.line else ""
                raise ImportFileError(self.filename, f"not valid CSV: {exc}{where}", line=self.line) from exc
            if values and values != [""]:
                yield values
            elif self._header_budget is not None:  # a blank line before the header is not part of it
                self._header_budget, self._header_text = HEADER_MAX_CHARS, ""

    def read_header(self, records: Iterator[list[str]], *, fmt: ReviewFileFormat | None, formats: dict[str, ReviewFileFormat],
                    detect: Callable[[list[str]], ReviewFileFormat | None]) -> ReviewFileFormat:
        """The header (the first record that is not a blank line, at most HEADER_MAX_CHARS) checked against the
        format ``fmt`` or, when None, the format ``detect`` reads from it. Returns the format; raises
        ImportFileError naming the header's line: an empty file, a header too long, one that is not comma-separated,
        a format it cannot tell, a missing column, or a column of the format twice."""
        filename = self.filename
        any_format = "; ".join(f.describe() for f in formats.values())
        try:
            header = next(records, None)
        except _HeaderTooLong:
            raise ImportFileError(
                filename, f"the header is longer than {HEADER_MAX_CHARS:,} characters; expected a header line with the "
                          f"columns of {fmt.describe() if fmt else any_format}", line=self.line) from None
        except ImportFileError as exc:  # e.g. quoted names separated by ';': the delimiter says more than the quote
            if isinstance(exc.__cause__, csv.Error):
                self._refuse_other_delimiter(self._header_text.strip(), fmt=fmt, formats=formats, detect=detect,
                                             shown=f"the header {self._header_text.strip()[:120]!r} is not comma-separated")
            raise
        finally:
            self._header_budget, self._header_text = None, ""
        if header is None:
            raise ImportFileError(filename, f"the file is empty; expected a header line with the columns of "
                                            f"{fmt.describe() if fmt else any_format}", line=1)
        header = [h.strip() for h in header]
        self._check_text(header, line=self.line, names=None)
        if len(header) == 1:
            self._refuse_other_delimiter(header[0], fmt=fmt, formats=formats, detect=detect,
                                         shown=f"the header is one column {header[0][:120]!r}")
        if fmt is None:
            fmt = detect(header)
            if fmt is None:
                raise ImportFileError(
                    filename,
                    f"cannot tell the format from the header {', '.join(header)[:200]!r}; expected the columns of "
                    + "; or ".join(f.describe() for f in formats.values()) + " (or name the format)",
                    line=self.line,
                )
        missing = [c for c in fmt.required if c not in header]
        if missing:
            raise ImportFileError(
                filename,
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; expected the columns of {fmt.describe()}",
                line=self.line,
            )
        first: dict[str, int] = {}
        for number, name in enumerate(header, 1):
            if name in first and (name in fmt.required or name in fmt.optional):
                raise ImportFileError(
                    filename, f"the column {name} is in the header twice (columns {first[name]} and {number}); "
                              "expected each column once: remove or rename one", line=self.line, column=name)
            first.setdefault(name, number)
        self.header = header
        return fmt

    def _refuse_other_delimiter(self, text: str, *, fmt: ReviewFileFormat | None, formats: dict[str, ReviewFileFormat],
                                detect: Callable[[list[str]], ReviewFileFormat | None], shown: str) -> None:
        """Raise ImportFileError when the header ``text`` is separated by ``;``, a tab or ``|`` (csv.Sniffer),
        naming the separator and the format's columns; return otherwise. Only the first 4,096 characters are
        sniffed (a real header is shorter; the sniffer's patterns take quadratic time on some long texts)."""
        text = text[:4096]
        try:
            delimiter = csv.Sniffer().sniff(text, delimiters="".join(_DELIMITER_NAMES)).delimiter
        except csv.Error:
            return
        if delimiter not in _DELIMITER_NAMES:
            return
        names = next(csv.reader([text], delimiter=delimiter), [])
        guess = fmt or detect([name.strip() for name in names])
        expected = guess.describe() if guess else "; ".join(f.describe() for f in formats.values())
        raise ImportFileError(
            self.filename,
            f"{shown}: the file looks {_DELIMITER_NAMES[delimiter]}-separated; expected comma-separated columns of "
            f"{expected}",
            line=self.line,
        )

    def rows(self, records: Iterator[list[str]], *, review_columns: Mapping[str, str] | None = None,
             known_keys: frozenset[str] | set[str] = frozenset()) -> Iterator[Row]:
        """The data rows; ``review_columns`` (review field -> column) names the column in a review's errors;
        ``known_keys``: the curriculum's concept keys (Row.identifier)."""
        header = self.header
        # a column the format reads is in the header once (read_header); another one repeated is not read
        columns = {name: i for i, name in reversed(list(enumerate(header)))}
        for values in records:
            line = self.line
            if len(values) != len(header):
                raise ImportFileError(
                    self.filename, f"expected {len(header)} comma-separated fields as in the header, got {len(values)}",
                    line=line,
                )
            self._check_text(values, line=line, names=header)
            yield Row(filename=self.filename, line=line, columns=columns, values=values, review_columns=review_columns,
                      known_keys=known_keys)

    def _check_text(self, values: list[str], *, line: int, names: list[str] | None) -> None:
        """Every field UTF-8 text without NUL bytes (a database text column cannot hold NUL); an error names the
        column by ``names`` (None: by its number, as for the header)."""
        joined = "".join(values)
        if "\x00" in joined:
            bad = next(i for i, v in enumerate(values) if "\x00" in v)
            raise ImportFileError(self.filename, "a NUL byte in the field: expected UTF-8 text", line=line,
                                  column=names[bad] if names else str(bad + 1))
        try:
            joined.encode()
        except UnicodeEncodeError:
            bad = next(i for i, v in enumerate(values) if _not_utf8(v))
            raise ImportFileError(self.filename, "not UTF-8 text", line=line,
                                  column=names[bad] if names else str(bad + 1)) from None


def _not_utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False
