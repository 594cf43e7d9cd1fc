"""Multiple-choice audio QA: MMAU test-mini (the benchmark of TGSR's reasoning experiments)."""

from __future__ import annotations

from rewards.parsing import normalise_text

from .common import Conversion, ConverterError, RowProblem, get, read_json_or_jsonl
from .common import text as as_text


def _answer(answer, choices: list[str]) -> str:
    """The choice the answer names: equal text, else equal after normalisation (case, punctuation)."""
    if not isinstance(answer, str) or not answer.strip():
        raise RowProblem("answer", f"expected the correct choice's text, got {answer!r:.80}", "bad_value")
    answer = answer.strip()
    if answer in choices:
        return answer
    matches = [c for c in choices if normalise_text(c) == normalise_text(answer)]
    if len(matches) == 1:
        return matches[0]
    raise RowProblem("answer", f"{answer!r} is not one of the choices {choices}", "inconsistent")


def _mmau_row(conv: Conversion, item: dict, index: int) -> list[dict]:
    audio = conv.find_audio(get(item, "audio_id", "audio"), "audio_id")
    duration = conv.duration(audio, item.get("duration"))
    question = as_text(get(item, "question"), "question")
    choices = get(item, "choices")
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        raise RowProblem("choices", f"expected a list of non-empty strings, got {choices!r:.80}", "bad_type")
    choices = [c.strip() for c in choices]
    meta = {
        "source": "mmau",
        "mmau_id": item.get("id"),
        "domain": item.get("task"),  # sound | music | speech
        "category": item.get("category"),
        "sub_category": item.get("sub-category", item.get("sub_category")),
        "difficulty": item.get("difficulty"),
        "dataset": item.get("dataset"),
    }
    return [
        {
            "id": f"mmau-{item.get('id', index)}",
            "audio": str(audio),
            "duration": duration,
            "task": "qa",
            "query": question,
            "choices": choices,
            "answer": _answer(get(item, "answer"), choices),
            "meta": {k: v for k, v in meta.items() if v is not None},
        }
    ]


def convert_mmau(conv: Conversion) -> None:
    """MMAU test-mini JSON: a list of ``{id, audio_id, question, choices, answer (choice text), task, category,
    sub-category, difficulty, dataset, ...}``. ``audio_id`` (e.g. ``./test-mini-audios/<id>.wav``) is looked up
    under the audio directory, then by its basename. ``task`` (sound/music/speech) is stored as ``meta.domain``."""
    items, kind = read_json_or_jsonl(conv.source)
    if len(items) == 1 and isinstance(items[0][1], dict) and "question" not in items[0][1]:
        raise ConverterError(f"{conv.source}: expected a JSON list of MMAU items, got an object")
    for k, (where, item) in enumerate(conv.objects(items)):
        conv.add(where, item.get("id"), lambda item=item, k=k: _mmau_row(conv, item, k))
