"""``tapdb object import FILE``: many instances of one template from CSV or JSON Lines.

CSV: a header row with a ``name`` column; every other column is a property.
An empty cell leaves the property out (the template's default stays); a cell
that is a JSON number, ``true``, ``false`` or ``null`` is stored as that value;
anything else as text (``001`` stays text: JSON numbers have no leading zero).

JSON Lines: one object per line, ``{"name": ..., "properties": {...}}``; blank
lines are skipped.

The whole file is one transaction, written through ``COPY``
(:func:`tapdb_core.bulk.bulk_create`): a bad row names its line and field and
nothing is imported. A progress bar is drawn on stderr when it is a terminal.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

from tapdb_core.bulk import DEFAULT_BATCH_SIZE, BulkRow, bulk_create
from tapdb_core.cli import common
from tapdb_core.cli.parsing import Subparsers, leaf
from tapdb_core.errors import ValidationError, Violation

FORMATS: Final = ("csv", "jsonl")
_LITERALS: Final = {"true": True, "false": False, "null": None}


def configure(obj: Subparsers) -> None:
    """Adds ``import`` to the ``object`` command group."""
    p = leaf(
        obj,
        "import",
        "create many instances of one template from a CSV or JSON Lines file",
        cmd_import,
        description=__doc__,
    )
    p.add_argument("file", metavar="FILE", help="the file to import ('-' reads stdin)")
    p.add_argument("--template", required=True, metavar="CODE", help="template code of every row")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="file format (default: from the file name's extension; .csv else JSON Lines)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per COPY batch (default {DEFAULT_BATCH_SIZE})",
    )


class _Counting:
    """Byte-counting line iterator over a binary stream (progress by bytes read)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.read = 0

    def lines(self) -> Iterator[str]:
        for number, raw in enumerate(self.stream, start=1):
            self.read += len(raw)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _bad(number, "", f"not UTF-8 text ({exc.reason})") from None


def _bad(line: int, field: str, message: str) -> ValidationError:
    return ValidationError(
        f"line {line}: refused, nothing was imported", [Violation(path=field, message=message)]
    )


def _cell(text: str) -> Any:
    if text in _LITERALS:
        return _LITERALS[text]
    first = text[:1]
    if first.isdigit() or first == "-":
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, int | float):
            return value
    return text


def csv_rows(lines: Iterator[str]) -> Iterator[BulkRow]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    if "name" not in header:
        raise _bad(1, "/name", "the header row has no 'name' column")
    if len(set(header)) != len(header):
        raise _bad(1, "", "the header row repeats a column")
    name_at = header.index("name")
    line = reader.line_num
    for record in reader:
        start, line = line + 1, reader.line_num
        if not record:
            continue
        if len(record) != len(header):
            raise _bad(start, "", f"{len(record)} cells, the header has {len(header)}")
        props = {
            key: _cell(value)
            for i, (key, value) in enumerate(zip(header, record, strict=True))
            if i != name_at and value != ""
        }
        yield BulkRow(record[name_at], props or None, start)


def jsonl_rows(lines: Iterator[str]) -> Iterator[BulkRow]:
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError as exc:
            raise _bad(number, "", f"not JSON: {exc}") from None
        if not isinstance(item, dict):
            raise _bad(number, "", "each line must be a JSON object")
        unknown = sorted(set(item) - {"name", "properties"})
        if unknown:
            raise _bad(number, f"/{unknown[0]}", "unknown key (name and properties only)")
        yield BulkRow(item.get("name", ""), item.get("properties"), number)


class _Bar:
    """One redrawn line on stderr: rows, percent of the file, rate."""

    def __init__(self, counter: _Counting, size: int | None) -> None:
        self.counter = counter
        self.size = size
        self.start = time.monotonic()
        self.live = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if not self.live:
            return
        rate = done / max(time.monotonic() - self.start, 1e-9)
        if self.size:
            share = min(self.counter.read / self.size, 1.0)
            filled = int(share * 30)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {share:4.0%} "
        else:
            bar = ""
        print(f"\r{bar}{done:,} rows ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.live:
            print(file=sys.stderr, flush=True)


def _open(path: str) -> tuple[IO[bytes], int | None]:
    if path == "-":
        return sys.stdin.buffer, None
    file = Path(path)
    return file.open("rb"), file.stat().st_size


def cmd_import(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise common.UsageError("--batch-size must be at least 1")
    fmt = args.format or ("csv" if str(args.file).lower().endswith(".csv") else "jsonl")
    target = common.resolve_target(args)
    stream, size = _open(args.file)
    try:
        counter = _Counting(stream)
        rows = csv_rows(counter.lines()) if fmt == "csv" else jsonl_rows(counter.lines())
        bar = _Bar(counter, size)
        engine = common.open_engine(target)
        try:
            with common.transaction(engine, target) as conn:
                total = bulk_create(
                    conn, args.template, rows, batch_size=args.batch_size, on_batch=bar
                )
        finally:
            bar.close()
            engine.dispose()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if args.json:
        common.print_json({"imported": total, "template": args.template})
    else:
        common.out(f"imported {total:,} instances of {args.template}")
    return 0
