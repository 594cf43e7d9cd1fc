"""Event-annotated releases: DESED strong labels (sound event detection) and FTAR (TimeAudio's grounding and dense
captioning sets, used by TimePro-RL)."""

from __future__ import annotations

import re
from collections import defaultdict

from rewards.parsing import parse_absence, parse_events, parse_windows

from .common import (
    Conversion,
    ConverterError,
    RowProblem,
    Source,
    get,
    grounding_rows,
    number,
    read_json_or_jsonl,
    read_tsv,
)
from .common import text as as_text

_EMPTY = {"", "nan", "none", "null"}

# DESED (DCASE task 4): metadata/train/..., metadata/validation/validation.tsv, metadata/eval/public.tsv. The
# validation set (1,168 clips) is what DCASE systems report as their development test set, and TimePro-RL Table 2's
# SED test set (1,153 clips) matches its size; the public evaluation set and the DCASE evaluation set are reported
# too. So all three are evaluation splits; train (synthetic soundscapes, weak, unlabelled) is not.
DESED = Source(
    "DESED",
    {"public-eval": ("public",), "eval": ("evaluation",), "validation": ("val", "valid"), "train": ("training",)},
    ("validation", "public-eval", "eval"),
    folder_names=True,
)
# FTAR (TimeAudio): training and test sets per task; TimePro-RL Table 2 reports the test sets.
FTAR = Source("FTAR", {"train": ("training",), "test": ("eval",)}, ("test",))


def readable_label(label: str) -> str:
    """DESED class names use underscores: ``Alarm_bell_ringing`` -> ``Alarm bell ringing``.

    >>> readable_label("Alarm_bell_ringing")
    'Alarm bell ringing'
    """
    return " ".join(label.replace("_", " ").split())


def _desed_events(entries: list[tuple[str, dict]]) -> list[dict]:
    events = []
    for where, entry in entries:
        label = (entry.get("event_label") or "").strip()
        if label.lower() in _EMPTY:
            continue  # a file without events is listed with an empty label
        try:
            onset, offset = number(entry.get("onset"), "onset"), number(entry.get("offset"), "offset")
        except RowProblem as problem:
            raise RowProblem(problem.field, f"{where}: {problem.reason}", problem.kind) from None
        events.append({"onset": onset, "offset": offset, "label": readable_label(label)})
    return events


def convert_desed(conv: Conversion, *, durations: str | None = None, tasks: tuple[str, ...] = ("sed",)) -> None:
    """DESED strong labels (TSV ``filename onset offset event_label``; a file without events has an empty label)
    plus, optionally, the durations TSV (``filename duration``; missing durations are read from the audio header).
    One sed row per file; ``tasks`` may add grounding rows (one per file and class, all its events as windows).
    Files listed only in the durations TSV become sed rows without events."""
    unknown = set(tasks) - {"grounding", "sed"}
    if unknown or not tasks:
        raise ValueError(f"tasks must be grounding and/or sed, got {list(tasks)}")
    per_file: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for where, entry in read_tsv(conv.source, ["filename", "onset", "offset", "event_label"]):
        name = (entry.get("filename") or "").strip()
        if not name:
            conv.problem(where, None, RowProblem("filename", "empty filename", "missing_field"))
            continue
        per_file[name].append((where, entry))
    known: dict[str, str] = {}
    if durations is not None:
        for _, entry in read_tsv(durations, ["filename", "duration"]):
            known[(entry.get("filename") or "").strip()] = entry.get("duration")
        for name in known:
            if name and name not in per_file:
                per_file[name] = []
    for name, entries in per_file.items():
        where = entries[0][0] if entries else f"file {name!r} (durations only)"
        conv.add(where, name, lambda name=name, entries=entries: _desed_rows(conv, name, entries, known, tasks))


def _desed_rows(conv: Conversion, name: str, entries, known: dict, tasks) -> list[dict]:
    audio = conv.find_audio(name, "filename")
    duration = conv.duration(audio, known.get(name))
    events = _desed_events(entries)
    meta = {"source": "desed", "file": name}
    rows = []
    if "sed" in tasks:
        rows.append(
            {
                "id": f"desed-{audio.stem}",
                "audio": str(audio),
                "duration": duration,
                "task": "sed",
                "events": events,
                "meta": meta,
            }
        )
    if "grounding" in tasks:
        by_label: dict[str, list] = defaultdict(list)
        for event in events:
            by_label[event["label"]].append([event["onset"], event["offset"]])
        rows += grounding_rows(f"desed-{audio.stem}", audio, duration, dict(by_label), meta)
    return rows


# ---- FTAR -------------------------------------------------------------------------------------------------------
FTAR_TASKS = {
    "tag": "grounding",
    "temporal audio grounding": "grounding",
    "audio grounding": "grounding",
    "ag": "grounding",
    "grounding": "grounding",
    "dac": "dac",
    "dense audio captioning": "dac",
    "dense captioning": "dac",
    "sed": "sed",
    "sound event detection": "sed",
}
_QUOTED = re.compile(r"'([^']+)'|\"([^\"]+)\"|“([^”]+)”")


def ftar_task(name: str) -> str | None:
    """The manifest task of an FTAR task name (``TAG``, ``Temporal_Audio_Grounding``, ``DAC``...), or None.

    >>> ftar_task("Temporal_Audio_Grounding"), ftar_task("DAC"), ftar_task("TSS")
    ('grounding', 'dac', None)
    """
    return FTAR_TASKS.get(" ".join(str(name).replace("_", " ").replace("-", " ").lower().split()))


def grounding_query(question: str) -> str:
    """The queried sound of a grounding question: its quoted phrase (TimeAudio: "What are the start and end times
    of audio matching 'dogs barking'?"), else the whole question.

    >>> grounding_query("What are the start and end times of audio matching 'dogs barking'?")
    'dogs barking'
    """
    quoted = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(question)]
    return quoted[-1].strip() if quoted else question


def _ftar_row(conv: Conversion, item: dict, task_override: str | None) -> list[dict]:
    raw_task = task_override or get(item, "task")
    task = ftar_task(raw_task)
    if task is None:
        supported = ", ".join(sorted({k.upper() for k in FTAR_TASKS if " " not in k}))
        raise RowProblem("task", f"unsupported FTAR task {raw_task!r} (supported: {supported})", "unsupported_task")
    audio = conv.find_audio(get(item, "audio"), "audio")
    duration = conv.duration(audio, item.get("duration"))
    question = as_text(get(item, "question"), "question")
    answer = get(item, "answer")
    if not isinstance(answer, str):
        raise RowProblem("answer", f"expected a string, got {answer!r:.80}", "bad_type")
    meta = {"source": "ftar", "task": str(raw_task), "question": question, "answer": answer}
    row = {
        "id": f"ftar-{task}-{item.get('id', audio.stem)}",
        "audio": str(audio),
        "duration": duration,
        "task": task,
        "meta": meta,
    }
    if task == "grounding":
        spans = [list(w) for w in parse_windows(answer)]  # "<start>-<end>", the shared parser
        if not spans and not parse_absence(answer):
            raise RowProblem("answer", f"no '<start>-<end>' window in {answer!r:.80}", "bad_answer")
        if not spans:  # an absent event: a presence question answered "No." (SpotSound §2.1), never a grounding row
            row = {**row, "id": f"ftar-existence-{item.get('id', audio.stem)}", "task": "existence"}
        return [{**row, "query": grounding_query(question), "windows": spans, "exists": bool(spans)}]
    events = [{"onset": e.onset, "offset": e.offset, "label": e.label} for e in parse_events(answer)]
    if not events and not parse_absence(answer):
        raise RowProblem("answer", f"no 'onset-offset, description' event in {answer!r:.80}", "bad_answer")
    missing = [e for e in events if not e["label"].strip()]
    if missing:
        raise RowProblem(
            "answer", f"event {missing[0]['onset']}-{missing[0]['offset']} has no description", "bad_answer"
        )
    return [{**row, "query": question, "events": events}]


def convert_ftar(conv: Conversion, *, task: str | None = None) -> None:
    """FTAR (TimeAudio) JSON: a list of ``{audio, question, answer, duration, id, task?}``, one file per task.
    Grounding answers are ``<start>-<end>`` (several allowed), dense captions ``onset-offset, description`` lines;
    ``task`` overrides the items' own ``task`` field (TAG/grounding, DAC, SED)."""
    if task is not None and ftar_task(task) is None:
        raise ConverterError(f"--task {task!r} is not an FTAR task this converter handles ({', '.join(FTAR_TASKS)})")
    items, _ = read_json_or_jsonl(conv.source)
    for where, item in conv.objects(items):
        conv.add(where, item.get("id"), lambda item=item: _ftar_row(conv, item, task))
