"""Parse time windows, events, yes/no answers and multiple-choice answers out of free model text.

One parser, shared by the rewards and by evaluation, so the number trained on is the number reported.

Time windows are recognised in every format the seed papers use, anywhere in the text and several per answer:

* SpotSound / UniTime (SpotSound §2.2): ``From 2.5 seconds to 4 seconds``, ``From 10.74s to 14.74s``;
* TGSR STA (TGSR §3.1, App. B.1): ``... starts at 1.20 seconds and ends at 3.40 seconds``;
* TimePro-RL AG and SED (TimePro-RL §3.1): JSON values ``{"query": [2.5, 4.0]}``, ``{"dog": [1.2, 3.4]}``,
  also ``{"dog": [[1, 2], [3, 4]]}`` and Python-style ``{'dog': [1, 2]}``;
* TimePro-RL DAC and FTAR grounding: ``1.20-3.40, a dog barks`` and ``<start>-<end>`` such as ``3.2-5.6``
  (also ``1.2 to 3.4 seconds``, ``1.2s ~ 3.4s``, ``between 1 and 2 seconds``, ``[1.2s - 3.4s]``, ``(1.2, 3.4)``);
* timestamp tokens (TimePro-RL §2.1): ``<1.24><3.00>`` (consecutive tokens pair up);
* clock times inside any of the range forms: ``00:03-00:07.5``, ``1:02:03``.

Numbers are decimal (optionally signed, optionally with an exponent); the words ``nan``/``inf`` are not numbers.
Each window ``(s, e)`` is normalised in this order:

1. NaN or infinite ends (e.g. ``1e999``) drop the window;
2. negative ends are clipped to 0;
3. reversed pairs (``s > e``) are swapped;
4. when ``duration`` is known (finite and > 0), both ends are clipped to ``[0, duration]``.

Zero-length windows are kept (they count as events for Eb-F1 and add nothing to an IoU union).

Reasoning models may wrap their answer: when the text has ``</think>`` only what follows the last one is the
answer, and when it has ``<answer>`` only the content of the last ``<answer>...</answer>`` is
(:func:`answer_region`). Window and event parsers read the whole text they are given; callers pick the region.

All scanning is linear in the input: every pattern starts at a distinctive token, number starts are anchored with a
look-behind so that a run of digits is tried once, and no two unbounded quantifiers can split the same characters.

Cost is also bounded (our choices, sized for the recipes' completions of at most 512 tokens): the rewards read a
completion through :func:`cap_text`, which keeps the first and the last :data:`MAX_TEXT_CHARS` / 2 characters of a
longer text (the answer of a reasoning model comes last), and :func:`parse_windows` / :func:`parse_events` return
at most :data:`MAX_ITEMS` windows or events (the first ones: a completion listing more still pays for them in
precision, since each reference can match one prediction at most). ``benchmarks/reward_time.py`` measures the
worst call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "Event",
    "answer_region",
    "final_line",
    "normalise_text",
    "parse_absence",
    "parse_choice",
    "parse_event_answer",
    "parse_events",
    "parse_grounding",
    "parse_steps",
    "parse_windows",
    "parse_yes_no",
]

Window = tuple[float, float]


class Event(NamedTuple):
    """An event as ``(onset, offset, label)``, times in seconds."""

    onset: float
    offset: float
    label: str


# --- lexical pieces --------------------------------------------------------------------------------------------
# A number never starts right after a word character, a dot or a colon: a digit run is then tried from its first
# digit only, which keeps scanning linear on inputs such as "1111...".
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_CLOCK = r"\d+:\d{1,2}(?::\d{1,2})?(?:\.\d+)?"
_TIME = rf"(?<![\w.:])(?:{_CLOCK}|{_NUM})"
_UNIT = r"(?:seconds?|secs?|s)\b"
_OPT_UNIT = rf"\s*(?:{_UNIT}\s*)?"  # one \s* before and one after an optional unit: never two in a row
_SEP = r"(?:-|–|—|~|to\b|until\b|till\b)"

_WINDOW_RE = re.compile(
    "|".join(
        [
            # SpotSound: "From 2.5 seconds to 4 seconds"
            rf"\bfrom\s+(?P<a1>{_TIME}){_OPT_UNIT}{_SEP}\s*(?P<a2>{_TIME})",
            # TGSR STA: "starts at 1.20 seconds and ends at 3.40 seconds"
            rf"\bstart(?:s|ed|ing)?\s+(?:at\s+)?(?P<b1>{_TIME}){_OPT_UNIT}(?:,\s*)?and\s+(?:it\s+|then\s+)?"
            rf"end(?:s|ed|ing)?\s+(?:at\s+)?(?P<b2>{_TIME})",
            # "between 1 and 2 seconds"
            rf"\bbetween\s+(?P<c1>{_TIME}){_OPT_UNIT}and\s+(?P<c2>{_TIME})",
            # timestamp tokens "<1.24><3.00>" (also "<1.24> - <3.00>")
            rf"<\s*(?P<d1>{_NUM})\s*>\s*(?:(?:-|–|to\b|,)\s*)?<\s*(?P<d2>{_NUM})\s*>",
            # bracketed pairs: JSON "[2.5, 4.0]", "[1.2s - 3.4s]", "(1.2, 3.4)"
            rf"[\[(]\s*(?P<e1>{_TIME}){_OPT_UNIT}(?:,|{_SEP})\s*(?P<e2>{_TIME}){_OPT_UNIT}[\])]",
            # bare ranges: FTAR "3.2-5.6", DAC "1.20-3.40, ...", "1.2 to 3.4 seconds"
            rf"(?P<f1>{_TIME}){_OPT_UNIT}{_SEP}\s*(?P<f2>{_TIME})",
        ]
    ),
    re.IGNORECASE,
)
_GROUPS = (("a1", "a2"), ("b1", "b2"), ("c1", "c2"), ("d1", "d2"), ("e1", "e2"), ("f1", "f2"))

# JSON-like keys of TimePro-RL SED/AG answers: '"label": [' or "'label': [". Keys are bounded (300 characters)
# and cannot cross a line or a quote, so each opening quote costs at most the distance to the next quote.
_KEY_RE = re.compile(r"\"((?:[^\"\\\n]|\\[^\n]){0,300})\"\s*:\s*(?=\[)|'([^'\\\n]{0,300})'\s*:\s*(?=\[)")
_PAIR_RE = re.compile(rf"\[\s*({_TIME}){_OPT_UNIT},\s*({_TIME}){_OPT_UNIT}\]")
_SPACE_COMMA_RE = re.compile(r"\s*(?:,\s*)?")
_OPEN_RE = re.compile(r"\[\s*")

_ABSENCE_RE = re.compile(
    r"\b(?:not\s+(?:be\s+)?(?:present|heard|audible|detected|found|occur\w*|appear\w*|exist\w*|contain\w*|"
    r"in\s+the\s+(?:audio|clip|recording))|absent|no\s+such|(?:does|did|do)\s*n[o']t\s+(?:occur|appear|exist|"
    r"contain|happen|include)|(?:is|are)n't\s+(?:present|heard|audible|there)|cannot\s+be\s+heard|"
    r"can't\s+be\s+heard|never\s+(?:occurs|appears|happens)|no\s+(?:events?|sounds?)\s+(?:(?:is|are|was|were)\s+)?"
    r"(?:present|detected|found|heard))\b",
    re.IGNORECASE,
)
_PRESENCE_RE = re.compile(
    r"\b(?:(?:is|are)\s+present|can\s+be\s+heard|(?:is|are)\s+(?:heard|audible)|(?:occurs|appears)\s+in|"
    r"present\s+in\s+the\s+(?:audio|clip|recording))\b",
    re.IGNORECASE,
)
_LEADING_YES_NO_RE = re.compile(r"[\s\W_]{0,20}(yes|no)\b", re.IGNORECASE)
_YES_NO_WORD_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# matched against stripped text: an explicit empty answer such as "[]", "{}" or "None."
_EMPTY_ANSWER_RE = re.compile(r"(?:\[\s*\]|\{\s*\}|none|null|n/a)[.!]?", re.IGNORECASE)

_LETTER_PAREN_RE = re.compile(r"\(([a-z])\)")
_LETTER_LEAD_RE = re.compile(
    r"\W{0,5}(?:(?:the\s+)?(?:final\s+|correct\s+)?(?:answer|option|choice)(?:\s+is)?\s*(?:[:：]\s*)?)?"
    r"\(?([a-z])(?:\s*[).:]|\s*$)"
)
_NON_WORD_RE = re.compile(r"[\W_]+")
_STEP_SEP_CHARS = " \t\r,;:-–—.)]}>|*"  # quotes stay: they delimit quoted speech
_UNIT_RE = re.compile(_UNIT, re.IGNORECASE)


def _to_seconds(token: str) -> float:
    """A number or clock time ("1:02.5" = 62.5 s) as float; never raises on what ``_TIME`` matches."""
    if ":" in token:
        total = 0.0
        for part in token.split(":"):
            total = total * 60.0 + float(part)
        return total
    return float(token)


def _normalise(start: float, end: float, duration: float | None, raw: bool = False) -> Window | None:
    """Apply the module's documented normalisation (``raw``: steps 1 and 3 only); None drops the window."""
    if not (math.isfinite(start) and math.isfinite(end)):
        return None
    if not raw:
        start, end = max(start, 0.0), max(end, 0.0)
    if start > end:
        start, end = end, start
    if duration is not None:
        start, end = min(start, duration), min(end, duration)
    return (start, end)


def _valid_duration(duration: float | None) -> float | None:
    """A usable clip duration or None: NaN, inf, non-positive and non-numeric durations are ignored."""
    try:
        value = float(duration) if duration is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and math.isfinite(value) and value > 0 else None


def _match_window(match: re.Match, duration: float | None, raw: bool = False) -> Window | None:
    for first, second in _GROUPS:
        if match.group(first) is not None:
            return _normalise(_to_seconds(match.group(first)), _to_seconds(match.group(second)), duration, raw)
    return None  # unreachable: every alternative has one pair of groups


MAX_TEXT_CHARS = 8192
"""Characters of one completion that the rewards read (see :func:`cap_text`)."""

MAX_ITEMS = 256
"""Windows or events that one parse returns at most (the first in the text)."""


def cap_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` itself when it has at most ``limit`` characters, else its first and last ``limit // 2`` joined by a
    newline: a pathological completion costs no more than a long real one, and a final answer is still read.

    >>> cap_text("abcdefgh", limit=4)
    'ab\\ngh'
    """
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n" + text[len(text) - half :]


def answer_region(text: str) -> str:
    """The part of ``text`` that holds the answer: after the last ``</think>``, inside the last ``<answer>``.

    >>> answer_region("<think>maybe 1-2</think><answer>From 3 seconds to 4 seconds.</answer>")
    'From 3 seconds to 4 seconds.'
    >>> answer_region("No.")
    'No.'
    """
    cut = text.rfind("</think>")
    if cut >= 0:
        text = text[cut + len("</think>") :]
    start = text.rfind("<answer>")
    if start >= 0:
        text = text[start + len("<answer>") :]
        end = text.find("</answer>")
        if end >= 0:
            text = text[:end]
    return text


def parse_windows(text: str, duration: float | None = None) -> list[Window]:
    """All time windows in ``text`` (the first :data:`MAX_ITEMS`), in order of appearance, normalised (see the
    module docstring).

    >>> parse_windows("From 2.50 seconds to 4.00 seconds. From 5.00 seconds to 6.50 seconds.")
    [(2.5, 4.0), (5.0, 6.5)]
    >>> parse_windows('{"query": [2.5, 4.0]}')
    [(2.5, 4.0)]
    >>> parse_windows("<1.24><3.00> and 9-7, -1-2", duration=8.0)
    [(1.24, 3.0), (7.0, 8.0), (0.0, 2.0)]
    """
    duration = _valid_duration(duration)
    windows = []
    for match in _WINDOW_RE.finditer(text):
        window = _match_window(match, duration)
        if window is not None:
            windows.append(window)
            if len(windows) == MAX_ITEMS:
                break
    return windows


def _is_empty_answer(text: str) -> bool:
    return _EMPTY_ANSWER_RE.fullmatch(text.strip()) is not None


def parse_absence(text: str) -> bool:
    """True when ``text`` states that the queried sound is absent (SpotSound §2.1 negatives, §3.2).

    Also true for an explicit empty answer (``[]``, ``{}``, ``None``). Empty text is not a statement of absence.

    >>> parse_absence("The sound is not present in the audio.")
    True
    >>> parse_absence("From 1 seconds to 2 seconds.")
    False
    """
    return _is_empty_answer(text) or _ABSENCE_RE.search(text) is not None


def parse_grounding(text: str, duration: float | None = None) -> list[Window] | None:
    """Windows of a grounding answer; ``[]`` when it states absence; None when it is neither (unparseable).

    >>> parse_grounding("The sound is not present in the audio.")
    []
    >>> parse_grounding("I am not sure.") is None
    True
    """
    windows = parse_windows(text, duration)
    if windows:
        return windows
    return [] if parse_absence(text) else None


def _unescape_key(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw) if "\\" in raw else raw


def _keyed_value_pairs(text: str, pos: int) -> tuple[list[tuple[str, str]], int]:
    """Read ``[a, b]`` or ``[[a, b], [c, d], ...]`` at ``pos``; return the raw pairs and the end position."""
    pair = _PAIR_RE.match(text, pos)
    if pair is not None:
        return [(pair.group(1), pair.group(2))], pair.end()
    opened = _OPEN_RE.match(text, pos)  # outer "[" of a list of pairs
    pairs: list[tuple[str, str]] = []
    cursor = opened.end() if opened else pos
    while True:
        pair = _PAIR_RE.match(text, cursor)
        if pair is None:
            break
        pairs.append((pair.group(1), pair.group(2)))
        cursor = _SPACE_COMMA_RE.match(text, pair.end()).end()
    return pairs, cursor


def _keyed_events(
    text: str, duration: float | None, raw: bool = False
) -> tuple[list[tuple[int, Event]], list[tuple[int, int]]]:
    """TimePro-RL style ``{"label": [on, off]}`` events with their positions, and the spans they cover."""
    events: list[tuple[int, Event]] = []
    spans: list[tuple[int, int]] = []
    for key in _KEY_RE.finditer(text):
        label = _unescape_key(key.group(1)) if key.group(1) is not None else key.group(2)
        pairs, end = _keyed_value_pairs(text, key.end())
        for onset, offset in pairs:
            window = _normalise(_to_seconds(onset), _to_seconds(offset), duration, raw)
            if window is not None:
                events.append((key.start(), Event(window[0], window[1], label.strip())))
        if pairs:
            spans.append((key.start(), end))
    return events, spans


def _line_events(
    text: str, spans: list[tuple[int, int]], duration: float | None, raw: bool = False
) -> list[tuple[int, Event]]:
    """Events written as a window plus a description on one line (TimePro-RL DAC: ``1.20-3.40, a dog barks``).

    A window's description is the text after it up to the next window on the line; when that is empty, the text
    before the line's first window (``a dog barks: 1.2-3.4``). Windows inside JSON-keyed spans are skipped.
    """
    events: list[tuple[int, Event]] = []
    span_index = 0
    line_start = 0
    length = len(text)
    while line_start <= length:
        line_end = text.find("\n", line_start)
        if line_end < 0:
            line_end = length
        matches = []
        for match in _WINDOW_RE.finditer(text, line_start, line_end):
            while span_index < len(spans) and spans[span_index][1] <= match.start():
                span_index += 1
            if span_index < len(spans) and spans[span_index][0] <= match.start():
                continue  # inside {"label": [...]}: already read as a keyed event
            matches.append(match)
        if matches:
            prefix = text[line_start : matches[0].start()].strip(_STEP_SEP_CHARS + "([{<")
            for k, match in enumerate(matches):
                stop = matches[k + 1].start() if k + 1 < len(matches) else line_end
                after = text[match.end() : stop]
                description = _strip_description(after) or prefix
                window = _match_window(match, duration, raw)
                if window is not None:
                    events.append((match.start(), Event(window[0], window[1], description)))
        line_start = line_end + 1
    return events


def _strip_description(text: str) -> str:
    """Drop the separator and unit left between a window and its description ("s, a dog" -> "a dog")."""
    text = text.lstrip(_STEP_SEP_CHARS)
    unit = _UNIT_RE.match(text)
    if unit is not None:
        text = text[unit.end() :].lstrip(_STEP_SEP_CHARS)
    return text.rstrip()


def parse_events(text: str, duration: float | None = None, *, raw: bool = False) -> list[Event]:
    """Events ``(onset, offset, label)`` in order of appearance (the first :data:`MAX_ITEMS`), for SED and dense
    captioning.

    JSON-keyed events (TimePro-RL SED: one ``{"label": [on, off]}`` per line, or several keys, or lists of pairs)
    take the key as label; other windows take the rest of their line as label (TimePro-RL DAC lines).
    ``raw=True`` keeps the times as written (negative ones too, ``duration`` unused): only non-finite windows are
    dropped and reversed pairs swapped, so that a caller can tell a window before 0 s from one at 0 s.

    >>> parse_events('{"dog barking": [1.2, 3.4]}\\n{"speech": [0, 2]}')
    [Event(onset=1.2, offset=3.4, label='dog barking'), Event(onset=0.0, offset=2.0, label='speech')]
    >>> parse_events("1.20-3.40, a dog barks loudly")
    [Event(onset=1.2, offset=3.4, label='a dog barks loudly')]
    """
    duration = None if raw else _valid_duration(duration)
    keyed, spans = _keyed_events(text, duration, raw)
    lines = _line_events(text, spans, duration, raw)
    if not keyed:
        return [event for _, event in lines[:MAX_ITEMS]]
    if not lines:
        return [event for _, event in keyed[:MAX_ITEMS]]
    return [event for _, event in sorted(keyed + lines, key=lambda item: item[0])[:MAX_ITEMS]]


def parse_event_answer(text: str, duration: float | None = None) -> list[Event] | None:
    """Events of a SED/DAC answer; ``[]`` when it says there are none; None when it is neither (unparseable).

    >>> parse_event_answer("[]"), parse_event_answer("no idea") is None
    ([], True)
    """
    events = parse_events(text, duration)
    if events:
        return events
    return [] if parse_absence(text) else None


def parse_steps(text: str, duration: float | None = None, *, raw: bool = False) -> list[Event]:
    """Timestamped reasoning steps (TGSR App. C.1 ``tau = {(s_t, Delta_t)}``): distinct (interval, explanation).

    The explanation of a step is the text that follows its interval on the same line (see :func:`parse_events`).

    >>> parse_steps("[0.0s - 1.5s]: The speaker says 'hello'.\\n[0.0s - 1.5s]: The speaker says 'hello'.")
    [Event(onset=0.0, offset=1.5, label="The speaker says 'hello'.")]
    """
    seen = set()
    steps = []
    for event in parse_events(text, duration, raw=raw):
        if event not in seen:
            seen.add(event)
            steps.append(event)
    return steps


def parse_yes_no(text: str) -> bool | None:
    """The presence answer of a SpotSound existence question (§2.1: "Yes." / "No."); None if undecidable.

    Order: a leading yes/no word; a statement of absence; a statement of presence; a lone yes or no anywhere.

    >>> parse_yes_no("Yes."), parse_yes_no("no, it is not"), parse_yes_no("The sound is not present in the audio.")
    (True, False, False)
    >>> parse_yes_no("maybe") is None
    True
    """
    region = answer_region(text)
    lead = _LEADING_YES_NO_RE.match(region)
    if lead is not None:
        return lead.group(1).lower() == "yes"
    if _ABSENCE_RE.search(region) is not None:
        return False
    if _PRESENCE_RE.search(region) is not None:
        return True
    words = {word.lower() for word in _YES_NO_WORD_RE.findall(region)}
    if len(words) == 1:
        return words.pop() == "yes"
    return None


def final_line(text: str) -> str:
    """The last non-empty line of ``text`` (TGSR §3.2: the answer is read from the final line).

    >>> final_line("reasoning...\\n(b) a dog\\n\\n")
    '(b) a dog'
    """
    stripped = text.rstrip()
    return stripped[stripped.rfind("\n") + 1 :].strip()


def normalise_text(text: str) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed: the form choice texts are compared in.

    >>> normalise_text("  A Dog, barking! ")
    'a dog barking'
    """
    return " ".join(_NON_WORD_RE.sub(" ", text.lower()).split())


def parse_choice(text: str, choices: Sequence[str] | None = None) -> int | None:
    """Index of the chosen option in the final non-empty line of the answer; None when there is none.

    A letter wins: ``(b)`` anywhere in the line (TGSR's released reward matches ``\\(([a-d])\\)``), else a leading
    ``b)``, ``B.``, ``Answer: b`` or a lone ``b``. Otherwise the longest choice text contained in the line (as whole
    words, case and punctuation ignored) is the answer, and a tie between different choices gives None. With
    ``choices`` given, letters beyond the number of choices are ignored.

    >>> parse_choice("Let me think.\\n(b) a cat", ["a dog", "a cat"])
    1
    >>> parse_choice("The answer is a hot dog", ["dog", "hot dog", "cat"])
    1
    >>> parse_choice("no idea", ["dog", "cat"]) is None
    True
    """
    line = final_line(answer_region(text)).lower()
    limit = len(choices) if choices else 26
    for match in (_LETTER_PAREN_RE.search(line), _LETTER_LEAD_RE.match(line)):
        if match is not None:
            index = ord(match.group(1)) - ord("a")
            if index < limit:
                return index
    if not choices:
        return None
    padded = f" {normalise_text(line)} "
    best, best_len, tie = None, 0, False
    for index, choice in enumerate(choices):
        norm = normalise_text(str(choice))
        if not norm or f" {norm} " not in padded:
            continue
        if len(norm) > best_len:
            best, best_len, tie = index, len(norm), False
        elif len(norm) == best_len and norm != normalise_text(str(choices[best])):
            tie = True
    return None if tie else best
