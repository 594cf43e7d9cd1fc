"""Turn a manifest row into the user instruction and the target answer.

Two styles, registered in :data:`STYLES`:

- ``"spotsound"``: grounding answers are sentences, ``From 2.50 seconds to 4.00 seconds.``, the target format of
  SpotSound (arXiv:2604.13023, §2.2) and its UniTime lineage.
- ``"timepro"``: grounding answers are JSON lines, ``{"query": [2.5, 4.0]}``, as in TimePro-RL
  (arXiv:2604.13715, §3.1, audio grounding and SED output formats).

Existence, sed, dac, sta and qa render the same in both styles. The reward parser reads exactly these targets, so
they must not change without changing it.

Absent events are asked only as presence questions (``existence`` rows, answered ``Yes.`` / ``No.``, SpotSound
§2.1 and §3.1): a grounding question is only ever asked about an event that is present (at inference, only after a
"yes", App. C.1), so its prompt carries no "if the sound is not present" escape and every grounding target is a
list of windows. A grounding row without windows (accepted by the manifest schema, e.g. from a user's own data, and
scored by evaluation as a negative) has no training target: :func:`render_target` raises for it.

>>> row = {"task": "grounding", "query": "a rising whistle", "windows": [[2.5, 4.0]]}
>>> render_target(row, "spotsound")
'From 2.50 seconds to 4.00 seconds.'
>>> render_target(row, "timepro")
'{"query": [2.5, 4.0]}'
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable

NO_EVENTS = "No sound events are present in the audio."
"""Target of a sed or dac row with no events."""
GROUNDING_KEY = "query"
"""The literal key of a TimePro-style grounding answer, ``{"query": [onset, offset]}``."""


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def _json_pair(start: float, end: float) -> list[float]:
    return [round(float(start), 2), round(float(end), 2)]


def _letter(index: int) -> str:
    return string.ascii_lowercase[index]


# Questions ---------------------------------------------------------------------------------------------------


def grounding_question_spotsound(row: dict) -> str:
    return (
        f'Find the start and end time of the sound described by "{row["query"]}". '
        'Answer in the form "From s seconds to e seconds."'
    )


def grounding_question_timepro(row: dict) -> str:
    return (
        f'Find the start and end time of the sound described by "{row["query"]}". '
        "Answer with one JSON object per occurrence, one per line, in the form "
        f'{{"{GROUNDING_KEY}": [onset, offset]}} with times in seconds.'
    )


def existence_question(row: dict) -> str:
    return f'Is the sound "{row["query"]}" present in the audio? Answer yes or no.'


def sed_question(row: dict) -> str:
    if row.get("query"):
        return row["query"]
    return (
        "Detect all sound events in the audio. For each event, output one JSON object per line in the form "
        '{"<label>": [onset, offset]} with times in seconds.'
    )


def dac_question(row: dict) -> str:
    if row.get("query"):
        return row["query"]
    return (
        "Describe each sound event in the audio with its timing. Write one line per event in the form "
        '"onset-offset, description" with times in seconds.'
    )


def sta_question(row: dict) -> str:
    # TGSR (arXiv:2603.19468) §3.1 and appendix: "What is the timestamp of the following segment? [given sentence]"
    return f"What is the timestamp of the following segment? {row['query']}"


def qa_question(row: dict) -> str:
    choices = "\n".join(f"({_letter(i)}) {choice}" for i, choice in enumerate(row["choices"]))
    return f"{row['query']}\n{choices}"


# Targets -----------------------------------------------------------------------------------------------------


def _grounding_windows(row: dict) -> list:
    windows = row.get("windows") or []
    if not windows or row.get("exists") is False:
        raise ValueError(
            f"row {row.get('id')!r}: a grounding row without windows (an absent event) has no target; SpotSound asks "
            'about absent events only as presence questions (existence rows with exists false, answered "No."). '
            "Drop such rows or make them existence rows; `python -m rl_audio.data negatives` adds negatives to a "
            "manifest of positives in that form"
        )
    return windows


def grounding_target_spotsound(row: dict) -> str:
    return " ".join(f"From {_seconds(s)} seconds to {_seconds(e)} seconds." for s, e in _grounding_windows(row))


def grounding_target_timepro(row: dict) -> str:
    return "\n".join(json.dumps({GROUNDING_KEY: _json_pair(s, e)}) for s, e in _grounding_windows(row))


def existence_target(row: dict) -> str:
    # SpotSound §2.1: B in {yes, no}; the targets are the sentences "Yes." and "No."
    exists = row.get("exists")
    if exists is None:
        exists = bool(row.get("windows"))
    return "Yes." if exists else "No."


def sed_target(row: dict) -> str:
    events = row.get("events") or []
    if not events:
        return NO_EVENTS
    return "\n".join(json.dumps({e["label"]: _json_pair(e["onset"], e["offset"])}, ensure_ascii=False) for e in events)


def dac_target(row: dict) -> str:
    events = row.get("events") or []
    if not events:
        return NO_EVENTS
    return "\n".join(f"{_seconds(e['onset'])}-{_seconds(e['offset'])}, {e['label']}" for e in events)


def sta_target(row: dict) -> str:
    # TGSR §3.1: "The segment [given sentence] starts at t_s seconds and ends at t_e seconds."
    (start, end), *_ = row["windows"]
    return f"The segment {row['query']} starts at {_seconds(start)} seconds and ends at {_seconds(end)} seconds."


def qa_target(row: dict) -> str:
    index = row["choices"].index(row["answer"])
    return f"({_letter(index)}) {row['answer']}"


Renderer = Callable[[dict], str]

_SHARED: dict[str, tuple[Renderer, Renderer]] = {
    "existence": (existence_question, existence_target),
    "sed": (sed_question, sed_target),
    "dac": (dac_question, dac_target),
    "sta": (sta_question, sta_target),
    "qa": (qa_question, qa_target),
}

STYLES: dict[str, dict[str, tuple[Renderer, Renderer]]] = {
    "spotsound": {"grounding": (grounding_question_spotsound, grounding_target_spotsound), **_SHARED},
    "timepro": {"grounding": (grounding_question_timepro, grounding_target_timepro), **_SHARED},
}
"""style -> task -> (question renderer, target renderer)."""


def _renderers(row: dict, style: str) -> tuple[Renderer, Renderer]:
    if style not in STYLES:
        raise ValueError(f"unknown template style {style!r} (valid styles: {', '.join(STYLES)})")
    task = row.get("task")
    if task not in STYLES[style]:
        raise ValueError(f"style {style!r} has no template for task {task!r} (tasks: {', '.join(STYLES[style])})")
    return STYLES[style][task]


def render_question(row: dict, style: str = "spotsound") -> str:
    """The user instruction for ``row`` (a validated manifest row) in ``style``."""
    return _renderers(row, style)[0](row)


def render_target(row: dict, style: str = "spotsound") -> str:
    """The target answer for ``row`` in ``style``."""
    return _renderers(row, style)[1](row)
