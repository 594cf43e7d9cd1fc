"""Turn a manifest row into the user instruction and the target answer.

Four styles, registered in :data:`STYLES`:

- ``"spotsound"``: grounding answers are sentences, ``From 2.50 seconds to 4.00 seconds.``, the target format of
  SpotSound (arXiv:2604.13023, §2.2) and its UniTime lineage. Its STA template is TGSR's for Qwen2.5-Omni.
- ``"timepro"``: grounding answers are JSON lines, ``{"query": [2.5, 4.0]}``, as in TimePro-RL
  (arXiv:2604.13715, §3.1, audio grounding and SED output formats).
- ``"tgsr"``: the same templates as ``"spotsound"``, named for TGSR's recipes on Qwen2.5-Omni (STA as App. B.1.1).
- ``"tgsr_af3"``: ``"spotsound"`` with TGSR's STA template for Audio Flamingo 3 (App. B.1.2).

STA (TGSR, arXiv:2603.19468) has one template per base model, printed in App. B.1: for Qwen2.5-Omni (B.1.1, the
default of every style but ``"tgsr_af3"``), question "What is the timestamp of the following segment? <sentence>",
answer "The segment <sentence> starts at t_s seconds and ends at t_e seconds."; for Audio Flamingo 3 (B.1.2), the
same question followed by a format instruction, and an answer without the sentence. The recipe chooses with
``answer_style`` (``tgsr`` for Qwen2.5-Omni, ``tgsr_af3`` for Audio Flamingo 3); the checkpoint records it, so
the next stage and evaluation ask in the same form. Existence, sed, dac and qa render the same in every style.
The reward parser reads exactly these targets, so they must not change without changing it.

:data:`TGSR_REASONING_INSTRUCTION` is TGSR's stage-2 instruction (App. B.1.3), the system prompt of
``recipes/tgsr.yaml``.

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

TGSR_REASONING_INSTRUCTION = (
    "When answering, you must first provide reasoning grounded in the audio content using explicit timestamps. "
    "Start your response exactly with: \"To determine the best description, let's analyze the audio content and "
    'the given timestamps:" Then, after the reasoning, provide the final answer.'
)
"""TGSR App. B.1.3, "Stage 2: Timestamp-Grounded Reasoning Instruction", as the paper prints it (its LaTeX quotes
written as straight double quotes)."""
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
    # TGSR (arXiv:2603.19468) App. B.1.1 (Qwen2.5-Omni): "What is the timestamp of the following segment? [given
    # sentence]"
    return f"What is the timestamp of the following segment? {row['query']}"


def sta_question_af3(row: dict) -> str:
    # TGSR App. B.1.2 (Audio Flamingo 3), as the paper prints it
    return (
        f"What is the timestamp of the following segment? {row['query']} Provide both the start and end timestamps "
        "of this segment in seconds with 2 decimal places. Format: The segment starts at X.XX seconds and ends at "
        "Y.YY seconds."
    )


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
    # TGSR App. B.1.1: "The segment [given sentence] starts at t_s seconds and ends at t_e seconds."
    (start, end), *_ = row["windows"]
    return f"The segment {row['query']} starts at {_seconds(start)} seconds and ends at {_seconds(end)} seconds."


def sta_target_af3(row: dict) -> str:
    # TGSR App. B.1.2: "The segment starts at t_s seconds and ends at t_e seconds." (2 decimals, as its question asks)
    (start, end), *_ = row["windows"]
    return f"The segment starts at {_seconds(start)} seconds and ends at {_seconds(end)} seconds."


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

_SPOTSOUND = {"grounding": (grounding_question_spotsound, grounding_target_spotsound), **_SHARED}

STYLES: dict[str, dict[str, tuple[Renderer, Renderer]]] = {
    "spotsound": _SPOTSOUND,
    "timepro": {"grounding": (grounding_question_timepro, grounding_target_timepro), **_SHARED},
    "tgsr": _SPOTSOUND,
    "tgsr_af3": {**_SPOTSOUND, "sta": (sta_question_af3, sta_target_af3)},
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
