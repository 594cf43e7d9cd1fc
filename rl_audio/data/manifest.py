"""The JSONL manifest: one schema for every task, validated row by row.

One line per example (see ``docs/data.md`` for the full table)::

    {"id": "clip7-g0", "audio": "audio/clip7.wav", "duration": 8.0, "task": "grounding",
     "query": "a rising whistle", "windows": [[2.5, 4.0]], "events": [], "exists": true,
     "choices": [], "answer": "", "meta": {}}

Required: ``id``, ``audio``, ``duration``, ``task`` (and ``query`` for grounding, existence, sta and qa). Optional
fields take defaults. Unknown fields are errors, so that a misspelled ``window`` cannot silently turn a positive
into a negative: nothing is trained on silently wrong labels. Free-form extras go in ``meta``.

:func:`validate_row` checks and normalises one row and raises :class:`RowError`; :func:`load_manifest` turns that
into a :class:`ManifestError` naming file, 1-based line and field, e.g.
``data/train.jsonl:17: field 'windows': window [5.0, 3.0] has end < start``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from numbers import Real
from pathlib import Path

from tqdm.auto import tqdm

from rewards.tasks import TASKS

from .audio import AudioError, check_audio_file
from .provenance import check_training_rows, provenance_problem

logger = logging.getLogger(__name__)

QUERY_TASKS = frozenset({"grounding", "existence", "sta", "qa"})
REQUIRED_FIELDS = ("id", "audio", "duration", "task")
FIELDS = ("id", "audio", "duration", "task", "query", "windows", "events", "exists", "choices", "answer", "meta")
MAX_CHOICES = 26


class RowError(ValueError):
    """One invalid field of one row.

    Attributes:
        field: the offending field (``None`` for line-level problems such as malformed JSON).
        reason: what is wrong.
        kind: a short code used to count skipped rows (``missing_field``, ``bad_window``, ``unknown_task``...).
    """

    def __init__(self, field: str | None, reason: str, kind: str = "bad_value"):
        self.field = field
        self.reason = reason
        self.kind = kind
        super().__init__(f"field '{field}': {reason}" if field else reason)


class ManifestError(ValueError):
    """An invalid manifest line; the message reads ``<file>:<line>: field '<field>': <reason>``."""

    def __init__(self, path: str | os.PathLike, line: int, error: RowError):
        self.path = str(path)
        self.line = line
        self.field = error.field
        self.reason = error.reason
        self.kind = error.kind
        super().__init__(f"{self.path}:{line}: {error}" if line else f"{self.path}: {error}")


def _number(value, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise RowError(field, f"expected a number, got {value!r}", "bad_type")
    if not math.isfinite(value):
        raise RowError(field, f"non-finite number {value!r}", "non_finite")
    return float(value)


def _string(row: dict, field: str, *, required: bool = False) -> str:
    value = row.get(field, "")
    if not isinstance(value, str):
        raise RowError(field, f"expected a string, got {value!r}", "bad_type")
    if required and not value.strip():
        raise RowError(field, "must be a non-empty string", "missing_field")
    return value


def _interval(start, end, field: str, what: str, duration: float, tol: float) -> list[float]:
    start, end = _number(start, field), _number(end, field)
    shown = f"{what} [{start}, {end}]"
    if end < start:
        raise RowError(field, f"{shown} has end < start", "bad_window")
    if end == start:
        raise RowError(field, f"{shown} has zero length", "bad_window")
    if start < -tol or end > duration + tol:
        raise RowError(field, f"{shown} lies outside [0, {duration}] (duration)", "bad_window")
    return [max(start, 0.0), min(end, duration)]  # clamp what the tolerance let through


MAX_LINE_BYTES = 1 << 20
"""Longest manifest line read (1 MiB; our choice): a longer line is an error of its own (``line_too_long``)."""

MAX_ROW_ITEMS = 1000
"""Most ``windows``, ``events`` or ``choices`` of one row (our choice; the papers' clips have a few dozen events at
most): more is an error (``too_many_items``), not a row that makes every metric and reward slow."""


def _check_count(raw: list, field: str) -> None:
    if len(raw) > MAX_ROW_ITEMS:
        raise RowError(field, f"{len(raw)} items, more than the limit of {MAX_ROW_ITEMS}", "too_many_items")


def _windows(raw, duration: float, tol: float) -> list[list[float]]:
    if not isinstance(raw, list):
        raise RowError("windows", f"expected a list of [start, end] pairs, got {raw!r}", "bad_type")
    _check_count(raw, "windows")
    out = []
    for pair in raw:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RowError("windows", f"expected a [start, end] pair, got {pair!r}", "bad_window")
        out.append(_interval(pair[0], pair[1], "windows", "window", duration, tol))
    return sorted(out)


def _events(raw, duration: float, tol: float) -> list[dict]:
    if not isinstance(raw, list):
        raise RowError("events", f"expected a list of events, got {raw!r}", "bad_type")
    _check_count(raw, "events")
    out = []
    for event in raw:
        if not isinstance(event, dict) or set(event) != {"onset", "offset", "label"}:
            raise RowError("events", f"expected {{'onset', 'offset', 'label'}}, got {event!r}", "bad_event")
        label = event["label"]
        if not isinstance(label, str) or not label.strip():
            raise RowError("events", f"event label must be a non-empty string, got {label!r}", "bad_event")
        onset, offset = _interval(event["onset"], event["offset"], "events", "event", duration, tol)
        out.append({"onset": onset, "offset": offset, "label": label})
    return sorted(out, key=lambda e: (e["onset"], e["offset"], e["label"]))


def _choices(row: dict) -> list[str]:
    choices = row.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        raise RowError("choices", f"expected a list of non-empty strings, got {choices!r}", "bad_type")
    _check_count(choices, "choices")
    return list(choices)


def _check_task_fields(out: dict) -> None:
    """Cross-field rules that keep labels consistent."""
    task, windows, exists = out["task"], out["windows"], out["exists"]
    if exists is False and windows:
        raise RowError("windows", "exists is false but windows are given", "inconsistent")
    if task == "existence" and exists is None:
        raise RowError("exists", "existence rows need exists = true or false", "missing_field")
    if task == "grounding" and exists is True and not windows:
        raise RowError("windows", "exists is true but no windows are given", "inconsistent")
    if task == "sta" and len(windows) != 1:
        raise RowError("windows", f"sta rows need exactly one window, got {len(windows)}", "bad_window")
    if task == "qa":
        choices = out["choices"]
        if not 2 <= len(choices) <= MAX_CHOICES:
            raise RowError("choices", f"qa rows need 2 to {MAX_CHOICES} choices, got {len(choices)}", "bad_value")
        if out["answer"] not in choices:
            raise RowError("answer", f"answer {out['answer']!r} is not one of the choices", "inconsistent")


def validate_row(row: dict, *, duration_tolerance: float = 0.05) -> dict:
    """Check one manifest row and return a normalised copy with every field present.

    Windows and event bounds may exceed ``[0, duration]`` by ``duration_tolerance`` seconds (rounding in source
    annotations) and are then clamped; windows and events come back sorted by start.

    Raises:
        RowError: naming the field and the reason.
    """
    if not isinstance(row, dict):
        raise RowError(None, f"expected a JSON object, got {type(row).__name__}", "not_an_object")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise RowError(unknown[0], f"unknown field (valid fields: {', '.join(FIELDS)})", "unknown_field")
    for name in REQUIRED_FIELDS:
        if name not in row:
            raise RowError(name, "missing required field", "missing_field")
    task = row["task"]
    if task not in TASKS:
        raise RowError("task", f"unknown task {task!r} (valid tasks: {', '.join(TASKS)})", "unknown_task")
    if task in QUERY_TASKS and "query" not in row:
        raise RowError("query", f"missing required field for task {task!r}", "missing_field")
    duration = _number(row["duration"], "duration")
    if duration <= 0:
        raise RowError("duration", f"must be > 0, got {duration}", "bad_value")
    exists = row.get("exists")
    if exists is not None and not isinstance(exists, bool):
        raise RowError("exists", f"expected true, false or null, got {exists!r}", "bad_type")
    meta = row.get("meta", {})
    if not isinstance(meta, dict):
        raise RowError("meta", f"expected an object, got {meta!r}", "bad_type")
    problem = provenance_problem(meta)
    if problem:
        raise RowError("meta", problem, "bad_value")
    out = {
        "id": _string(row, "id", required=True),
        "audio": _string(row, "audio", required=True),
        "duration": duration,
        "task": task,
        "query": _string(row, "query", required=task in QUERY_TASKS),
        "windows": _windows(row.get("windows", []), duration, duration_tolerance),
        "events": _events(row.get("events", []), duration, duration_tolerance),
        "exists": exists,
        "choices": _choices(row),
        "answer": _string(row, "answer"),
        "meta": dict(meta),
    }
    _check_task_fields(out)
    return out


def resolve_audio(audio: str, base_dir: str | os.PathLike) -> str:
    """An absolute path for ``audio``: kept if absolute, else joined to ``base_dir`` (the manifest's folder)."""
    if os.path.isabs(audio):
        return os.path.normpath(audio)
    return os.path.normpath(os.path.join(os.path.abspath(base_dir), audio))


def write_manifest(rows: Iterable[dict], path: str | os.PathLike, *, relative_audio: bool = True) -> Path:
    """Validate ``rows`` and write them as JSONL (fields in schema order), atomically.

    With ``relative_audio`` (default), absolute audio paths inside the manifest's folder are written relative to
    it, so that the folder can be moved as a whole.

    Raises:
        ValueError: a row is invalid; the message gives its 0-based index, id and the field.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    lines = []
    for index, row in enumerate(rows):
        try:
            clean = validate_row(row)
        except RowError as err:
            raise ValueError(f"cannot write row {index} (id {row.get('id')!r}) to {path}: {err}") from err
        if relative_audio and os.path.isabs(clean["audio"]):
            audio = Path(clean["audio"]).resolve()
            if audio.is_relative_to(base):
                clean["audio"] = audio.relative_to(base).as_posix()
        lines.append(json.dumps(clean, ensure_ascii=False, allow_nan=False))
    data = "".join(line + "\n" for line in lines)
    try:
        encoded = data.encode("utf-8")  # before any file is touched: a lone surrogate fails here, leaving nothing
    except UnicodeEncodeError as err:
        row = data.count("\n", 0, err.start)
        raise ValueError(f"cannot write row {row} to {path}: text that is not valid Unicode ({err.reason})") from None
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(encoded)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass
class SkipReport:
    """What :func:`load_manifest_with_report` kept and dropped.

    Attributes:
        path: the manifest.
        total: non-blank lines read.
        kept: rows returned.
        skipped: number of dropped rows per reason code (``bad_window``, ``audio_missing``, ...).
        first_error: the first full error message seen for each reason code.
        lines: the 1-based line of each kept row, by id.
    """

    path: str
    total: int = 0
    kept: int = 0
    skipped: Counter = dataclass_field(default_factory=Counter)
    first_error: dict[str, str] = dataclass_field(default_factory=dict)
    lines: dict[str, int] = dataclass_field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def add(self, error: ManifestError) -> None:
        self.skipped[error.kind] += 1
        self.first_error.setdefault(error.kind, str(error))

    def log(self) -> None:
        """Log the summary (a warning when rows were dropped)."""
        if not self.num_skipped:
            logger.info("%s: %d rows, none skipped", self.path, self.kept)
            return
        reasons = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.skipped.items()))
        logger.warning("%s: kept %d of %d rows; skipped %s", self.path, self.kept, self.total, reasons)
        for kind, message in sorted(self.first_error.items()):
            logger.warning("  first %s: %s", kind, message)


def _check_audio(row: dict, mode: str, duration_tolerance: float) -> None:
    try:
        actual = check_audio_file(row["audio"], decode=mode == "decode")
    except AudioError as err:
        raise RowError("audio", str(err), f"audio_{err.kind}") from err
    if abs(actual - row["duration"]) > duration_tolerance:
        raise RowError("duration", f"{row['duration']} s but the audio file lasts {actual:.3f} s", "duration_mismatch")


def _audio_mode(check_audio: bool | str) -> str | None:
    if check_audio in (False, None):
        return None
    if check_audio is True or check_audio == "header":
        return "header"
    if check_audio == "decode":
        return "decode"
    raise ValueError(f"check_audio must be False, True, 'header' or 'decode', got {check_audio!r}")


def load_manifest_with_report(
    path: str | os.PathLike,
    *,
    skip_invalid: bool = False,
    check_audio: bool | str = False,
    duration_tolerance: float = 0.05,
    audio_duration_tolerance: float = 0.5,
    progress: bool = False,
) -> tuple[list[dict], SkipReport]:
    """Like :func:`load_manifest`, and also return the :class:`SkipReport`."""
    mode = _audio_mode(check_audio)
    base = os.path.dirname(os.path.abspath(path))
    report = SkipReport(path=str(path))
    rows, first_line = [], {}
    if not os.path.isfile(path):
        what = "is a directory, not a manifest file" if os.path.isdir(path) else "not found"
        raise FileNotFoundError(f"manifest {path}: {what}")
    with open(path, "rb") as handle:  # bytes: a line that is not UTF-8 is that line's error, not the file's
        lines = list(enumerate(handle, start=1))
    if not any(line.strip() for _, line in lines):
        raise ManifestError(path, 0, RowError(None, "the manifest has no rows (empty file)", "empty"))
    for number, line in tqdm(lines, desc=f"validate {os.path.basename(path)}", disable=not progress):
        if not line.strip():
            continue
        report.total += 1
        try:
            row = _parse_line(_decode(line, number), number, first_line, base, duration_tolerance)
            if mode:
                _check_audio(row, mode, audio_duration_tolerance)
        except RowError as err:
            error = ManifestError(path, number, err)
            if not skip_invalid:
                raise error from err
            report.add(error)
            continue
        first_line[row["id"]] = number
        rows.append(row)
    report.kept = len(rows)
    report.lines = first_line
    if skip_invalid:
        report.log()
    return rows, report


def _decode(line: bytes, number: int) -> str:
    if len(line) > MAX_LINE_BYTES:
        raise RowError(
            None, f"line of {len(line):,} bytes, longer than the limit of {MAX_LINE_BYTES:,}", "line_too_long"
        )
    try:
        return line.decode("utf-8-sig" if number == 1 else "utf-8")  # a UTF-8 byte-order mark is accepted
    except UnicodeDecodeError as err:
        raise RowError(
            None, f"not UTF-8 text (byte 0x{line[err.start]:02x} at column {err.start + 1})", "bad_encoding"
        ) from None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON objects keep the last of two equal keys; in a manifest that silently relabels a row."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise RowError(key, "appears twice on this line (JSON keeps the last value silently)", "repeated_key")
        out[key] = value
    return out


def _huge_number_field(raw, key: str | None = None) -> str | None:
    """The top-level field holding an integer beyond float range (the cause of an OverflowError)."""
    if isinstance(raw, dict):
        for k, v in raw.items():
            found = _huge_number_field(v, k if key is None else key)
            if found:
                return found
    elif isinstance(raw, list):
        for v in raw:
            found = _huge_number_field(v, key)
            if found:
                return found
    elif isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) > 2**1023:
        return key
    return None


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_line(line: str, number: int, first_line: dict, base: str, duration_tolerance: float) -> dict:
    try:
        raw = json.loads(line, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise RowError(None, f"malformed JSON ({err.msg} at column {err.colno})", "malformed_json") from err
    except RowError:
        raise
    except RecursionError:
        raise RowError(None, "JSON nested too deeply", "too_deep") from None
    except ValueError as err:  # int-string conversion limit (a number of thousands of digits)
        raise RowError(None, f"unreadable number ({err})", "bad_number") from None
    try:
        row = validate_row(raw, duration_tolerance=duration_tolerance)
    except OverflowError:
        raise RowError(_huge_number_field(raw), "a number too large for a float", "bad_number") from None
    if _SURROGATE_ESCAPE.search(line):  # only a \uD800-\uDFFF escape can put a surrogate into a decoded line
        try:
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate would fail only when the row is written
            raise RowError(None, f"text that is not valid Unicode ({err.reason})", "bad_encoding") from None
    if row["id"] in first_line:
        raise RowError("id", f"duplicate id {row['id']!r} (first on line {first_line[row['id']]})", "duplicate_id")
    row["audio"] = resolve_audio(row["audio"], base)
    return row


def load_manifest(
    path: str | os.PathLike,
    *,
    skip_invalid: bool = False,
    check_audio: bool | str = False,
    duration_tolerance: float = 0.05,
    audio_duration_tolerance: float = 0.5,
    progress: bool = False,
) -> list[dict]:
    """Read and validate a JSONL manifest; ``audio`` comes back as an absolute path.

    Args:
        path: the manifest; relative ``audio`` paths are relative to its folder.
        skip_invalid: drop invalid rows (counted by reason and logged) instead of raising.
        check_audio: ``True``/``"header"`` checks that each audio file exists, is readable, has samples and lasts
            ``duration`` (within ``audio_duration_tolerance`` s); ``"decode"`` also decodes every file and rejects
            silent audio and NaN/inf samples.
        duration_tolerance: how far (s) windows and events may exceed ``[0, duration]`` before they are errors.
        audio_duration_tolerance: allowed gap (s) between ``duration`` and the file's real length.
        progress: show a tqdm bar.

    Raises:
        ManifestError: ``<file>:<line>: field '<field>': <reason>`` for the first invalid row (unless skipping).
    """
    rows, _ = load_manifest_with_report(
        path,
        skip_invalid=skip_invalid,
        check_audio=check_audio,
        duration_tolerance=duration_tolerance,
        audio_duration_tolerance=audio_duration_tolerance,
        progress=progress,
    )
    return rows


def dataset_features():
    """Explicit Arrow types, so that empty ``windows``/``events``/``choices`` lists in some rows type correctly."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "audio": Value("string"),
            "duration": Value("float64"),
            "task": Value("string"),
            "query": Value("string"),
            "windows": List(List(Value("float64"), length=2)),
            "events": List({"onset": Value("float64"), "offset": Value("float64"), "label": Value("string")}),
            "exists": Value("bool"),
            "choices": List(Value("string")),
            "answer": Value("string"),
            "meta": Value("string"),  # JSON text: free-form objects have no fixed Arrow type
        }
    )


EVAL_SPLITS = ("allow", "warn", "refuse")


def manifest_to_dataset(
    path_or_paths: str | os.PathLike | Iterable[str | os.PathLike], *, eval_splits: str = "allow", **kwargs
):
    """Load one or more manifests into a ``datasets.Dataset`` of paths (audio is not decoded).

    ``kwargs`` go to :func:`load_manifest`. ``meta`` is stored as JSON text. Ids must be unique across files.
    ``eval_splits``: what to do with rows converted from a benchmark's evaluation split
    (:mod:`~rl_audio.data.provenance`): ``allow`` them (evaluation), ``warn``, or ``refuse`` them with an
    :class:`~rl_audio.data.provenance.EvalSplitError` naming file, line, benchmark and split (training).
    """
    from datasets import Dataset

    if eval_splits not in EVAL_SPLITS:
        raise ValueError(f"eval_splits must be one of {EVAL_SPLITS}, got {eval_splits!r}")
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else list(path_or_paths)
    rows, seen = [], {}
    for path in paths:
        loaded, report = load_manifest_with_report(path, **kwargs)
        if eval_splits != "allow":
            check_training_rows(path, loaded, report.lines, allow=eval_splits == "warn")
        for row in loaded:
            if row["id"] in seen:
                raise ValueError(f"id {row['id']!r} appears in both {seen[row['id']]} and {path}")
            seen[row["id"]] = path
            rows.append({**row, "meta": json.dumps(row["meta"], ensure_ascii=False, sort_keys=True)})
    columns = {name: [row[name] for row in rows] for name in FIELDS}
    return Dataset.from_dict(columns, features=dataset_features())
