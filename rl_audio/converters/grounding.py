"""Temporal grounding benchmarks: AudioGrounding v1/v2, Clotho-Moment, UnAV-100, SpotSound-Bench.

Each produces positive ``grounding`` rows (query + all its windows); SpotSound negatives are added by the command
line's ``--negatives N`` (:func:`rl_audio.data.add_negatives`).
"""

from __future__ import annotations

from collections import defaultdict

from .common import Conversion, ConverterError, RowProblem, Source, get, grounding_rows, read_json, read_json_or_jsonl
from .common import text as as_text
from .common import windows as as_windows

# Evaluation splits: the test splits, which SpotSound §3.2 and §4.1 report (AudioGrounding, Clotho-Moment, a
# manually annotated subset of UnAV-100 test), as do the datasets' own papers; SpotSound-Bench is an evaluation set
# throughout.
AUDIOGROUNDING = Source(
    "AudioGrounding", {"train": ("training",), "val": ("valid", "validation", "dev"), "test": ()}, ("test",)
)
CLOTHO_MOMENT = Source(
    "Clotho-Moment", {"train": ("training",), "val": ("valid", "validation", "dev"), "test": ()}, ("test",)
)
UNAV100 = Source("UnAV-100", {"train": ("training",), "validation": ("val", "valid", "dev"), "test": ()}, ("test",))
SPOTSOUND_BENCH = Source("SpotSound-Bench", {"test": ("eval", "bench")}, ("test",), default_split="test")


def _pandas_records(data: dict, source) -> list[dict]:
    """A DataFrame written by pandas ``to_json()`` (``{column: {index: value}}``) as a list of records."""
    columns = {k: (list(v.values()) if isinstance(v, dict) else v) for k, v in data.items()}
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) != 1 or not all(isinstance(v, list) for v in columns.values()):
        raise ConverterError(f"{source}: expected a JSON list of items (or pandas columns), got an object")
    (n,) = lengths
    return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def _ag_v2_rows(conv: Conversion, item: dict) -> list[dict]:
    """AudioGrounding v2: ``{audiocap_id, audio_id, tokens, phrases: [{phrase, start_index, end_index,
    segments}]}``, one grounding row per phrase."""
    audio = conv.find_audio(get(item, "audio_id"), "audio_id")
    duration = conv.duration(audio, item.get("duration"))
    caption = as_text(get(item, "tokens", "caption"), "tokens")
    phrases = get(item, "phrases")
    if not isinstance(phrases, list) or not phrases:
        raise RowProblem("phrases", f"expected a non-empty list of phrase items, got {phrases!r:.80}", "bad_shape")
    rows = []
    for k, phrase in enumerate(phrases):
        if not isinstance(phrase, dict):
            raise RowProblem(f"phrases[{k}]", f"expected an object, got {phrase!r:.80}", "bad_shape")
        query = as_text(get(phrase, "phrase"), f"phrases[{k}].phrase")
        spans = as_windows(get(phrase, "segments"), f"phrases[{k}].segments")
        if not spans:
            raise RowProblem(f"phrases[{k}].segments", "no segments for the phrase", "bad_window")
        meta = {"source": "audiogrounding-v2", "audiocap_id": item.get("audiocap_id"), "caption": caption}
        meta["start_index"] = phrase.get("start_index")
        rows.append(_positive(f"ag-{item.get('audiocap_id', audio.stem)}-{k}", audio, duration, query, spans, meta))
    return rows


def _ag_v1_rows(conv: Conversion, item: dict) -> list[dict]:
    """AudioGrounding v1: ``{audiocap_id, filename, tokens, phrase (older: soundtag), start_word, timestamps}``,
    one phrase per item."""
    audio = conv.find_audio(get(item, "filename", "audio_id"), "filename")
    duration = conv.duration(audio, item.get("duration"))
    query = as_text(get(item, "phrase", "soundtag"), "phrase")
    spans = as_windows(get(item, "timestamps", "segments"), "timestamps")
    if not spans:
        raise RowProblem("timestamps", "no timestamps for the phrase", "bad_window")
    caption = item.get("caption") or item.get("tokens")
    meta = {
        "source": "audiogrounding-v1",
        "audiocap_id": item.get("audiocap_id"),
        "start_word": item.get("start_word"),
    }
    if caption:
        meta["caption"] = as_text(caption, "tokens")
    base = f"ag-{item.get('audiocap_id', audio.stem)}-{item.get('start_word', 0)}"
    return [_positive(base, audio, duration, query, spans, meta)]


def _positive(row_id: str, audio, duration: float, query: str, spans: list, meta: dict) -> dict:
    return {
        "id": str(row_id),
        "audio": str(audio),
        "duration": duration,
        "task": "grounding",
        "query": query,
        "windows": spans,
        "exists": True,
        "meta": {k: v for k, v in meta.items() if v is not None},
    }


def convert_audiogrounding(conv: Conversion, *, version: str = "auto") -> None:
    """AudioGrounding (Xu et al. 2021) label JSON, v1 or v2 (``version``: 1, 2 or auto from the item's fields)."""
    if version not in ("auto", "1", "2"):
        raise ValueError(f"version must be auto, 1 or 2, got {version!r}")
    data = read_json(conv.source)
    if isinstance(data, dict):
        data = _pandas_records(data, conv.source)
    if not isinstance(data, list):
        raise ConverterError(f"{conv.source}: expected a JSON list of AudioGrounding items, got {type(data).__name__}")
    for where, item in conv.objects((f"item {i}", it) for i, it in enumerate(data)):
        v2 = version == "2" or (version == "auto" and "phrases" in item)
        build = _ag_v2_rows if v2 else _ag_v1_rows
        conv.add(where, item.get("audiocap_id", item.get("audio_id")), lambda item=item, b=build: b(conv, item))


def convert_clotho_moment(conv: Conversion) -> None:
    """Clotho-Moment JSONL (Lighthouse format): ``{qid, query, duration, vid, relevant_windows: [[s, e], ...]}``;
    the audio is ``<vid>`` (with any usual extension) in the audio directory."""
    items, _ = read_json_or_jsonl(conv.source)
    for where, item in conv.objects(items):

        def build(item=item):
            audio = conv.find_audio(get(item, "vid"), "vid")
            duration = conv.duration(audio, item.get("duration"))
            query = as_text(get(item, "query"), "query")
            spans = as_windows(get(item, "relevant_windows"), "relevant_windows")
            if not spans:
                raise RowProblem("relevant_windows", "no relevant windows", "bad_window")
            meta = {"source": "clotho-moment", "qid": item.get("qid"), "vid": item.get("vid")}
            return [_positive(f"cm-{item.get('qid', audio.stem)}", audio, duration, query, spans, meta)]

        conv.add(where, item.get("qid"), build)


def _unav_video_rows(conv: Conversion, vid: str, entry: dict, tasks: tuple[str, ...], source: str) -> list[dict]:
    audio = conv.find_audio(vid, "video id")
    duration = conv.duration(audio, entry.get("duration"))
    annotations = get(entry, "annotations")
    if not isinstance(annotations, list):
        raise RowProblem("annotations", f"expected a list, got {annotations!r:.80}", "bad_shape")
    by_label: dict[str, list] = defaultdict(list)
    events = []
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise RowProblem(f"annotations[{k}]", f"expected an object, got {annotation!r:.80}", "bad_shape")
        label = as_text(get(annotation, "label"), f"annotations[{k}].label")
        (span,) = as_windows(get(annotation, "segment"), f"annotations[{k}].segment")
        by_label[label].append(span)
        events.append({"onset": span[0], "offset": span[1], "label": label})
    meta = {"source": source, "video": vid, "subset": entry.get("subset")}
    meta = {k: v for k, v in meta.items() if v is not None}
    rows = grounding_rows(f"{source}-{vid}", audio, duration, dict(by_label), meta) if "grounding" in tasks else []
    if "sed" in tasks:
        rows.append(
            {
                "id": f"{source}-{vid}-sed",
                "audio": str(audio),
                "duration": duration,
                "task": "sed",
                "events": events,
                "meta": meta,
            }
        )
    return rows


def convert_unav100(
    conv: Conversion, *, subset: str | None = None, tasks: tuple[str, ...] = ("grounding",), source: str = "unav100"
) -> None:
    """UnAV-100 annotations ``{"database": {vid: {duration, subset, annotations: [{segment, label}]}}}``: one
    grounding row per (video, label) with all its segments; ``tasks`` may add one sed row per video. The audio is
    ``<vid>`` (any usual extension) in the audio directory."""
    data = read_json(conv.source)
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise ConverterError(f'{conv.source}: expected {{"database": {{video_id: {{...}}}}}}, got {found}')
    unknown = set(tasks) - {"grounding", "sed"}
    if unknown or not tasks:
        raise ValueError(f"tasks must be grounding and/or sed, got {list(tasks)}")
    for vid, entry in database.items():
        where = f"database[{vid!r}]"
        if not isinstance(entry, dict):
            conv.problem(where, None, RowProblem(None, f"expected an object, got {entry!r:.80}", "bad_shape"))
            continue
        if subset and entry.get("subset") != subset:
            continue
        own = entry.get("subset") if source == "unav100" else None  # each video's own subset is its split
        conv.add(
            where,
            None,
            lambda vid=vid, entry=entry: _unav_video_rows(conv, vid, entry, tasks, source),
            split=own if isinstance(own, str) else None,
        )


def convert_spotsound_bench(conv: Conversion) -> None:
    """SpotSound-Bench (assumed format, see docs/evaluation.md): either UnAV-100's ``{"database": ...}`` layout (its
    queries follow the UnAV-100 ontology), or a JSON list / JSONL of ``{id?, audio (or audio_id, vid), query (or
    label, caption), duration?, windows (or timestamps, relevant_windows, segments)}``."""
    data = read_json(conv.source) if conv.source.suffix == ".json" else None
    if isinstance(data, dict) and "database" in data:
        convert_unav100(conv, source="spotsound")
        return
    items, _ = read_json_or_jsonl(conv.source)
    for where, item in conv.objects(items):

        def build(item=item, where=where):
            audio = conv.find_audio(get(item, "audio", "audio_id", "vid", "file"), "audio")
            duration = conv.duration(audio, item.get("duration"))
            query = as_text(get(item, "query", "label", "caption"), "query")
            spans = as_windows(get(item, "windows", "timestamps", "relevant_windows", "segments"), "windows")
            if not spans:
                raise RowProblem("windows", "no windows", "bad_window")
            row_id = item.get("id", f"{audio.stem}-{where.split()[-1]}")
            return [_positive(f"spot-{row_id}", audio, duration, query, spans, {"source": "spotsound-bench"})]

        conv.add(where, item.get("id"), build)


__all__ = [
    "AUDIOGROUNDING",
    "CLOTHO_MOMENT",
    "SPOTSOUND_BENCH",
    "UNAV100",
    "convert_audiogrounding",
    "convert_clotho_moment",
    "convert_spotsound_bench",
    "convert_unav100",
]
