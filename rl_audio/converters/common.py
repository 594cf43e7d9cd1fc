"""What every converter shares: reading the input, finding audio, durations, row validation, skip counting.

A converter turns one public release into manifest rows (:mod:`rl_audio.data.manifest`). Problems come in two kinds:

* the input has the wrong shape as a whole (not JSON, not a list, a TSV without the expected columns):
  :class:`ConverterError` naming the file, always;
* one item is bad (missing audio file, invalid window, missing field): :class:`ConverterError` naming the file,
  the item (JSON index, or 1-based line of JSONL/TSV), its id and the field, or, with ``skip_invalid``, the item is
  dropped and counted by reason (``audio_missing``, ``bad_window``, ``missing_field``...).

Every row records where it came from in ``meta.provenance`` (converter, dataset, split, and the benchmark whose
evaluation split it is; :mod:`rl_audio.data.provenance`). Each converter declares its release as a :class:`Source`:
its splits, the words of file names that tell them apart, and which splits are evaluation splits.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from ..data.audio import AUDIO_EXTENSIONS, AudioError, audio_duration
from ..data.manifest import RowError, validate_row
from ..data.provenance import PROVENANCE, make_provenance


class ConverterError(ValueError):
    """Bad converter input; the message names the file, the item and the field."""


class RowProblem(Exception):
    """One bad item: ``field``, ``reason`` and a short ``kind`` used to count skipped items."""

    def __init__(self, field: str | None, reason: str, kind: str = "bad_value"):
        self.field, self.reason, self.kind = field, reason, kind
        super().__init__(reason)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConverterError(f"{path}: input file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConverterError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from err


def read_json_or_jsonl(path: str | os.PathLike) -> tuple[list[tuple[str, Any]], str]:
    """Items of a JSON list or of a JSONL file, each with its location (``item 3`` or ``line 4``)."""
    path = Path(path)
    if not path.is_file():
        raise ConverterError(f"{path}: input file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return _jsonl_items(path, text), "jsonl"
    if isinstance(data, dict):  # a one-line JSONL file, or a single object
        return [("line 1" if "\n" not in text.strip() else "item 0", data)], "jsonl"
    if not isinstance(data, list):
        raise ConverterError(f"{path}: expected a JSON list of items or JSONL, got {type(data).__name__}")
    return [(f"item {i}", item) for i, item in enumerate(data)], "json"


def _jsonl_items(path: Path, text: str) -> list[tuple[str, Any]]:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as err:
            items.append((f"line {number}", RowProblem(None, f"malformed JSON ({err.msg})", "malformed_json")))
    if not items:
        raise ConverterError(f"{path}: empty input")
    return items


def read_tsv(path: str | os.PathLike, required: Iterable[str]) -> list[tuple[str, dict]]:
    """Rows of a tab-separated file with a header, each with its location (``line N``, 1-based)."""
    return _read_delimited(path, required, "\t", "tab-separated")


def read_csv(path: str | os.PathLike, required: Iterable[str]) -> list[tuple[str, dict]]:
    """Rows of a comma-separated file with a header (quoted fields may hold commas and line breaks), each with the
    line it starts on (``line N``, 1-based)."""
    return _read_delimited(path, required, ",", "comma-separated")


def _read_delimited(path, required: Iterable[str], delimiter: str, what: str) -> list[tuple[str, dict]]:
    path = Path(path)
    if not path.is_file():
        raise ConverterError(f"{path}: input file not found")
    required = list(required)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise ConverterError(
                    f"{path}: expected a {what} file with columns {required}; header is {header} (missing {missing})"
                )
            rows, start = [], reader.line_num + 1
            for row in reader:
                rows.append((f"line {start}", row))
                start = reader.line_num + 1
            return rows
    except UnicodeDecodeError as err:
        raise ConverterError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x})") from None


def get(item: dict, *names: str, required: bool = True, default: Any = None) -> Any:
    """The first of ``names`` present in ``item``; a missing required field is a :class:`RowProblem`."""
    for name in names:
        if name in item and item[name] is not None:
            return item[name]
    if required:
        alternatives = f" (or {', '.join(repr(n) for n in names[1:])})" if len(names) > 1 else ""
        raise RowProblem(names[0], f"missing required field{alternatives}", "missing_field")
    return default


def number(value: Any, field_name: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowProblem(field_name, f"expected a number, got {value!r}", "bad_type") from None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise RowProblem(field_name, f"expected a finite number, got {value!r}", "bad_type")
    return float(value)


def windows(value: Any, field_name: str) -> list[list[float]]:
    """``[[s, e], ...]`` or a single ``[s, e]`` as a list of float pairs (order and bounds: validate_row)."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float, str)) for v in value):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise RowProblem(field_name, f"expected [[start, end], ...], got {value!r}", "bad_window")
    out = []
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RowProblem(field_name, f"expected a [start, end] pair, got {pair!r}", "bad_window")
        start, end = number(pair[0], field_name), number(pair[1], field_name)
        if end <= start:
            what = "end < start" if end < start else "zero length"
            raise RowProblem(field_name, f"window [{start}, {end}] has {what}", "bad_window")
        out.append([start, end])
    return out


def text(value: Any, field_name: str) -> str:
    """A string, or a token list joined by spaces (AudioGrounding stores tokens)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        value = " ".join(value)
    if not isinstance(value, str) or not value.strip():
        raise RowProblem(field_name, f"expected a non-empty string, got {value!r}", "bad_value")
    return " ".join(value.split())


@dataclass(frozen=True)
class Source:
    """A public release a converter reads, and which of its splits are a benchmark's evaluation splits.

    Attributes:
        dataset: the release's name (``MMAU``), stored as ``meta.provenance.dataset``.
        splits: each split's name and the words of an input file name (or, with ``folder_names``, of its folder)
            that mean it, most specific first (``{"test-mini": ("test mini", "testmini"), "test": ("test",)}``);
            a word may carry digits (``eval21``). Empty: any split name is accepted and kept as given.
        eval_splits: the splits the papers (or common practice) report results on; their rows are refused for
            training.
        benchmark: the benchmark those splits evaluate (default: ``dataset``).
        default_split: the split when neither ``--split`` nor the file name tells (only for releases whose splits
            are all evaluation splits; else the split stays unknown, with a warning).
        folder_names: also read the split from the input's folder name (DESED keeps ``metadata/eval/...``).
    """

    dataset: str
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    eval_splits: tuple[str, ...] = ()
    benchmark: str | None = None
    default_split: str | None = None
    folder_names: bool = False

    def canonical(self, name: str) -> str:
        """The split that ``name`` (a split name or one of its words) means; unknown names raise ValueError when
        the splits are declared.

        >>> mmau = Source("MMAU", {"test-mini": ("test mini", "testmini"), "test": ()}, ("test-mini", "test"))
        >>> mmau.canonical("Test_Mini"), mmau.canonical("test")
        ('test-mini', 'test')
        """
        name = str(name).strip()
        if not self.splits:
            return name
        found = _match_split(self.splits, name, exact=True)
        if found is None:
            raise ValueError(f"{self.dataset} has no split {name!r} (splits: {', '.join(self.splits)})")
        return found

    def infer(self, path: str | os.PathLike) -> str | None:
        """The split named by the input file's name (then its folder's, with ``folder_names``), else None.

        >>> mmau = Source("MMAU", {"test-mini": ("test mini", "testmini"), "test": ()}, ("test-mini", "test"))
        >>> mmau.infer("data/mmau-test-mini.json"), mmau.infer("data/mmau-test.json"), mmau.infer("data/a.json")
        ('test-mini', 'test', None)
        """
        path = Path(path)
        names = [path.stem] + ([path.parent.name] if self.folder_names else [])
        for name in names:
            found = _match_split(self.splits, name)
            if found is not None:
                return found
        return None

    def provenance(self, converter: str, split: str | None) -> dict:
        benchmark = (self.benchmark or self.dataset) if split in self.eval_splits else None
        return make_provenance(converter, self.dataset, split, benchmark)


def _words(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", str(name).lower()).split())


def _match_split(splits: dict[str, tuple[str, ...]], name: str, *, exact: bool = False) -> str | None:
    """The first split one of whose words (or its own name) occurs in ``name`` as whole words (a trailing number
    allowed); with ``exact``, ``name`` must be that word."""
    text = _words(name)
    for split, words in splits.items():
        for word in (split, *words):
            word = _words(word)
            if exact and text == word:
                return split
            if not exact and re.search(rf"(?<![a-z0-9]){re.escape(word)}\d*(?![a-z0-9])", text):
                return split
    return None


@dataclass
class Conversion:
    """State of one conversion: the source, where audio lives, and the rows kept and items skipped."""

    source: Path
    audio_dir: Path | None = None
    skip_invalid: bool = False
    window_tolerance: float = 0.05
    check_audio: bool = False
    converter: str = ""
    info: Source | None = None
    split: str | None = None
    rows: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)
    _ids: set[str] = field(default_factory=set)

    def __post_init__(self):
        self.source = Path(self.source)
        self.audio_dir = Path(self.audio_dir) if self.audio_dir is not None else self.source.parent
        if not self.audio_dir.is_dir():
            raise ConverterError(f"audio directory {self.audio_dir} does not exist")

    # ---- audio ---------------------------------------------------------------------------------------------
    def find_audio(self, name: str, field_name: str = "audio") -> Path:
        """The audio file ``name`` (absolute, or relative to the audio directory; its basename is tried too, and
        the usual extensions when it has none)."""
        name = str(name).strip()
        if not name:
            raise RowProblem(field_name, "empty audio file name", "missing_field")
        path = Path(name)
        bases = [path] if path.is_absolute() else [self.audio_dir / path, self.audio_dir / path.name]
        candidates = []
        for base in bases:
            candidates.append(base)
            if not base.suffix or base.suffix.lower() not in AUDIO_EXTENSIONS:
                candidates += [base.with_name(base.name + ext) for ext in AUDIO_EXTENSIONS]
        for candidate in candidates:
            if candidate.is_file():
                return candidate.resolve()
        raise RowProblem(field_name, f"audio file {name!r} not found in {self.audio_dir}", "audio_missing")

    def duration(self, audio: Path, given: Any = None, field_name: str = "duration") -> float:
        """The input's duration when given (checked against the file header with ``check_audio``), else the
        header's (soundfile.info)."""
        if given is not None and not (isinstance(given, str) and not given.strip()):
            value = number(given, field_name)
            if value <= 0:
                raise RowProblem(field_name, f"must be > 0, got {value}", "bad_value")
            if self.check_audio:
                actual = self._header_duration(audio)
                if abs(actual - value) > 0.5:
                    raise RowProblem(field_name, f"{value} s but {audio} lasts {actual:.3f} s", "duration_mismatch")
            return value
        return round(self._header_duration(audio), 3)

    @staticmethod
    def _header_duration(audio: Path) -> float:
        try:
            return audio_duration(audio)
        except AudioError as err:
            raise RowProblem("audio", str(err), f"audio_{err.kind}") from err

    # ---- rows ----------------------------------------------------------------------------------------------
    def objects(self, items: Iterable[tuple[str, Any]]):
        """``(where, item)`` for the items that are JSON objects; the others are problems (raised or counted)."""
        for where, item in items:
            if isinstance(item, RowProblem):
                self.problem(where, None, item)
            elif not isinstance(item, dict):
                self.problem(where, None, RowProblem(None, f"expected a JSON object, got {item!r:.80}", "bad_shape"))
            else:
                yield where, item

    def unique_id(self, base: str) -> str:
        candidate, k = base, 2
        while candidate in self._ids:
            candidate, k = f"{base}-{k}", k + 1
        return candidate

    def problem(self, where: str, item_id: Any, problem: RowProblem) -> None:
        """Raise (or, skipping, count) a bad item, named by file, location, id and field."""
        ident = f" (id {item_id!r})" if item_id not in (None, "") else ""
        field_text = f"field '{problem.field}': " if problem.field else ""
        error = ConverterError(f"{self.source}: {where}{ident}: {field_text}{problem.reason}")
        if not self.skip_invalid:
            raise error
        self.skipped[problem.kind] += 1
        self.first_error.setdefault(problem.kind, str(error))

    def _provenance(self, split: str | None) -> dict | None:
        if self.info is None:
            return None
        if split:
            try:
                split = self.info.canonical(split)
            except ValueError:  # a split name the release uses that is not declared: kept as written
                split = str(split).strip()
        return self.info.provenance(self.converter, split or self.split)

    def add(self, where: str, item_id: Any, build: Callable[[], list[dict]], *, split: str | None = None) -> None:
        """Build the rows of one item and validate them; a problem in any drops the whole item.

        Each row gets ``meta.provenance``; ``split`` is the item's own split (UnAV-100's ``subset``, MMAU's
        ``split``), else the conversion's."""
        try:
            stamp = self._provenance(split)
            built = build()
            if stamp is not None:
                built = [{**row, "meta": {**row.get("meta", {}), PROVENANCE: stamp}} for row in built]
            clean = [validate_row(row, duration_tolerance=self.window_tolerance) for row in built]
        except RowProblem as problem:
            self.problem(where, item_id, problem)
            return
        except RowError as err:
            self.problem(where, item_id, RowProblem(err.field, err.reason, err.kind))
            return

        for row in clean:
            row["id"] = self.unique_id(row["id"])
            self._ids.add(row["id"])
            self.rows.append(row)


def grounding_rows(base_id: str, audio: Path, duration: float, by_label: dict[str, list], meta: dict) -> list[dict]:
    """One positive grounding row per label, with all its windows."""
    return [
        {
            "id": f"{base_id}-{_slug(label)}",
            "audio": str(audio),
            "duration": duration,
            "task": "grounding",
            "query": label,
            "windows": spans,
            "exists": True,
            "meta": dict(meta),
        }
        for label, spans in by_label.items()
    ]


def _slug(text: str) -> str:
    return "_".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())[:40] or "q"
