"""Multiple-choice audio QA: MMAU (the benchmark of TGSR's reasoning experiments, Tables 2-3), MELD emotion and
sentiment questions (a TGSR §4.1 stage-2 training source) and a generic multiple-choice JSONL format (how to bring
the other stage-2 sources, or any QA set)."""

from __future__ import annotations

import random

from rewards.parsing import normalise_text

from ..data.audio import AUDIO_EXTENSIONS
from .common import Conversion, ConverterError, RowProblem, Source, get, read_csv, read_json_or_jsonl
from .common import text as as_text

# MMAU releases test-mini (1k items, answers public) and test (answers held out); both are the benchmark.
MMAU = Source(
    "MMAU", {"test-mini": ("test mini", "testmini"), "test": ()}, ("test-mini", "test"), default_split="test-mini"
)


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


def _choices(value, field_name: str = "choices") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        raise RowProblem(field_name, f"expected a list of non-empty strings, got {value!r:.80}", "bad_type")
    return [c.strip() for c in value]


def _mmau_row(conv: Conversion, item: dict, index: int) -> list[dict]:
    audio = conv.find_audio(get(item, "audio_id", "audio"), "audio_id")
    duration = conv.duration(audio, item.get("duration"))
    question = as_text(get(item, "question"), "question")
    choices = _choices(get(item, "choices"))
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
    """MMAU test-mini (or test) JSON: a list of ``{id, audio_id, question, choices, answer (choice text), task,
    category, sub-category, difficulty, dataset, split?, ...}``. ``audio_id`` (e.g.
    ``./test-mini-audios/<id>.wav``) is looked up under the audio directory, then by its basename. ``task``
    (sound/music/speech) is stored as ``meta.domain``. Every MMAU split is an evaluation split: its rows are
    refused for training."""
    items, kind = read_json_or_jsonl(conv.source)
    if len(items) == 1 and isinstance(items[0][1], dict) and "question" not in items[0][1]:
        raise ConverterError(f"{conv.source}: expected a JSON list of MMAU items, got an object")
    for k, (where, item) in enumerate(conv.objects(items)):
        split = item.get("split") if isinstance(item.get("split"), str) else None
        conv.add(where, item.get("id"), lambda item=item, k=k: _mmau_row(conv, item, k), split=split)


# ---- MELD -------------------------------------------------------------------------------------------------------
# MELD (Poria et al. 2019, github.com/declare-lab/MELD): data/MELD/{train,dev,test}_sent_emo.csv; the test split is
# the emotion-recognition benchmark (TGSR Table 2 reports it), dev serves model selection.
MELD = Source("MELD", {"train": ("training",), "dev": ("val", "valid", "validation"), "test": ()}, ("test",))
MELD_COLUMNS = (
    "Sr No.",
    "Utterance",
    "Speaker",
    "Emotion",
    "Sentiment",
    "Dialogue_ID",
    "Utterance_ID",
    "Season",
    "Episode",
    "StartTime",
    "EndTime",
)
MELD_EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
MELD_SENTIMENTS = ("positive", "neutral", "negative")
MELD_QUESTIONS = {
    "emotion": "Which emotion does the speaker express in this utterance?",
    "sentiment": "What is the sentiment of the speaker in this utterance?",
}
# where MELD.Raw's {train,dev,test}.tar.gz unpack their clips
MELD_CLIP_FOLDERS = {
    "train": ("train_splits", "train/train_splits"),
    "dev": ("dev_splits_complete", "dev/dev_splits_complete"),
    "test": ("output_repeated_splits_test", "test/output_repeated_splits_test"),
}


def _meld_index(entry: dict, column: str) -> int:
    value = (entry.get(column) or "").strip()
    if not value.isdigit():
        raise RowProblem(column, f"expected a non-negative integer, got {value!r}", "bad_value")
    return int(value)


def _meld_label(entry: dict, column: str, labels: tuple[str, ...]) -> str:
    value = (entry.get(column) or "").strip().lower()
    if value not in labels:
        raise RowProblem(column, f"{value!r} is not a MELD label ({', '.join(labels)})", "bad_value")
    return value


def _meld_audio(conv: Conversion, stem: str):
    """``dia<D>_utt<U>`` with an audio extension, in the audio directory or MELD.Raw's clip folders under it."""
    folders = MELD_CLIP_FOLDERS.get(conv.split) or tuple(f for fs in MELD_CLIP_FOLDERS.values() for f in fs)
    for folder in ("", *folders):
        try:
            return conv.find_audio(f"{folder}/{stem}" if folder else stem, "audio")
        except RowProblem:
            continue
    for folder in ("", *folders):
        video = conv.audio_dir / folder / f"{stem}.mp4"
        if video.is_file():
            raise RowProblem(
                "audio",
                f"only MELD's video clip {video} was found: extract its audio first, e.g. "
                f"`ffmpeg -i {video.name} -vn -ac 1 -ar 16000 {stem}.wav` (audio read: {', '.join(AUDIO_EXTENSIONS)})",
                "audio_not_extracted",
            )
    raise RowProblem("audio", f"no audio file {stem}.* in {conv.audio_dir} or its {list(folders)}", "audio_missing")


def _meld_rows(conv: Conversion, entry: dict, questions, num_choices: int, choice_seed: int) -> list[dict]:
    dialogue, utterance = _meld_index(entry, "Dialogue_ID"), _meld_index(entry, "Utterance_ID")
    labels = {
        "emotion": _meld_label(entry, "Emotion", MELD_EMOTIONS),
        "sentiment": _meld_label(entry, "Sentiment", MELD_SENTIMENTS),
    }
    stem = f"dia{dialogue}_utt{utterance}"
    audio = _meld_audio(conv, stem)
    duration = conv.duration(audio)
    base = f"meld-{conv.split}-{stem}" if conv.split else f"meld-{stem}"
    meta = {
        "source": "meld",
        "domain": "speech",
        "dialogue_id": dialogue,
        "utterance_id": utterance,
        "speaker": (entry.get("Speaker") or "").strip(),
        "utterance": " ".join((entry.get("Utterance") or "").split()),
        "season": (entry.get("Season") or "").strip(),
        "episode": (entry.get("Episode") or "").strip(),
        "sr_no": (entry.get("Sr No.") or "").strip(),
    }
    rows = []
    for question in questions:
        answer = labels[question]
        rng = random.Random(f"{choice_seed}:{base}-{question}")  # str seeds are stable across runs and machines
        others = [x for x in (MELD_EMOTIONS if question == "emotion" else MELD_SENTIMENTS) if x != answer]
        keep = num_choices - 1 if question == "emotion" else len(others)
        choices = [answer, *rng.sample(others, keep)]
        rng.shuffle(choices)  # the answer's position is uniform, so no letter can be learnt as the answer
        rows.append(
            {
                "id": f"{base}-{question}",
                "audio": str(audio),
                "duration": duration,
                "task": "qa",
                "query": MELD_QUESTIONS[question],
                "choices": choices,
                "answer": answer,
                "meta": {**meta, "category": question},
            }
        )
    return rows


def convert_meld(
    conv: Conversion, *, questions: tuple[str, ...] = ("emotion",), num_choices: int = 4, choice_seed: int = 0
) -> None:
    """MELD's released CSVs (``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv``; columns ``Sr
    No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime``):
    one multiple-choice qa row per utterance and question, in MMAU's row layout.

    ``questions``: ``emotion`` (MELD's 7 emotions; ``num_choices`` of them, 2 to 7: the label and distractors
    drawn at random) and/or ``sentiment`` (positive, neutral, negative). Choices are shuffled with
    ``choice_seed``. The audio of utterance ``Utterance_ID`` of dialogue ``Dialogue_ID`` is ``dia<D>_utt<U>``
    with an audio extension, in the audio directory or under it in MELD.Raw's clip folders (``train_splits``,
    ``dev_splits_complete``, ``output_repeated_splits_test``, also one level down as ``train/train_splits``...).
    MELD releases those clips as ``.mp4`` video: extract the audio first (``ffmpeg -i dia0_utt0.mp4 -vn -ac 1
    -ar 16000 dia0_utt0.wav``); an utterance with only its mp4 is an ``audio_not_extracted`` error. The split
    comes from the file name (train/dev/test); test rows are refused for training.

    Layout checked against github.com/declare-lab/MELD (README "Description of the .csv files" and
    data/MELD/test_sent_emo.csv) and public loaders of MELD.Raw (clips ``dia<D>_utt<U>.mp4`` in the folders above).
    """
    unknown = [q for q in questions if q not in MELD_QUESTIONS]
    if unknown or not questions:
        raise ValueError(f"questions must be emotion and/or sentiment, got {list(questions)}")
    if not 2 <= num_choices <= len(MELD_EMOTIONS):
        raise ValueError(f"num_choices must be 2 to {len(MELD_EMOTIONS)}, got {num_choices}")
    for where, entry in read_csv(conv.source, MELD_COLUMNS):
        item_id = f"dia{entry.get('Dialogue_ID')}_utt{entry.get('Utterance_ID')}"
        conv.add(where, item_id, lambda entry=entry: _meld_rows(conv, entry, questions, num_choices, choice_seed))


# ---- generic multiple-choice JSONL ------------------------------------------------------------------------------
MC_FIELDS = ("id", "audio", "question", "choices", "answer", "duration", "meta")


def _mc_answer(answer, choices: list[str]) -> str:
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise RowProblem("answer", f"index {answer} is outside the {len(choices)} choices (0-based)", "bad_value")
        return choices[answer]
    if not isinstance(answer, str):
        raise RowProblem("answer", f"expected the correct choice's text or its 0-based index, got {answer!r:.80}")
    return _answer(answer, choices)


def _mc_row(conv: Conversion, item: dict, where: str, prefix: str) -> list[dict]:
    unknown = sorted(set(item) - set(MC_FIELDS))
    if unknown:
        raise RowProblem(unknown[0], f"unknown field (valid fields: {', '.join(MC_FIELDS)})", "unknown_field")
    audio = conv.find_audio(get(item, "audio"), "audio")
    duration = conv.duration(audio, item.get("duration"))
    choices = _choices(get(item, "choices"))
    meta = item.get("meta", {})
    if not isinstance(meta, dict):
        raise RowProblem("meta", f"expected an object, got {meta!r:.80}", "bad_type")
    row_id = item.get("id")
    if row_id is not None and (not isinstance(row_id, (str, int)) or isinstance(row_id, bool) or not str(row_id)):
        raise RowProblem("id", f"expected a non-empty string or integer, got {row_id!r:.80}", "bad_type")
    return [
        {
            "id": str(row_id) if row_id is not None else f"{prefix}-{where.split()[-1]}",
            "audio": str(audio),
            "duration": duration,
            "task": "qa",
            "query": as_text(get(item, "question"), "question"),
            "choices": choices,
            "answer": _mc_answer(get(item, "answer"), choices),
            "meta": {"source": "mc-jsonl", **meta},
        }
    ]


def convert_mc_jsonl(conv: Conversion, *, dataset: str | None = None, eval_benchmark: str | None = None) -> None:
    """Generic multiple-choice JSONL, one question per line (a JSON list is read too)::

        {"id": "q1", "audio": "clips/a.wav", "question": "How many speakers are there?",
         "choices": ["one", "two", "three"], "answer": "two", "duration": 4.2, "meta": {"category": "count"}}

    Required: ``audio`` (relative to the audio directory, or absolute), ``question``, ``choices`` (2 to 26
    strings), ``answer`` (the correct choice's text, matched ignoring case and punctuation, or its 0-based index).
    Optional: ``id`` (default ``<dataset>-<line>``), ``duration`` (default: the audio header), ``meta`` (an object
    kept in the row's ``meta``). Other fields are errors naming file, line and field.

    Provenance: ``dataset`` (default: the file's stem) and the split (``--split``) are recorded; pass
    ``eval_benchmark`` (the benchmark's name) when the file is a benchmark's evaluation split, so that its rows
    are refused for training (split ``test`` unless given).
    """
    name = dataset or conv.source.stem
    if eval_benchmark and not conv.split:
        conv.split = "test"
    conv.info = Source(name, eval_splits=(conv.split,) if eval_benchmark else (), benchmark=eval_benchmark)
    items, _ = read_json_or_jsonl(conv.source)
    prefix = "_".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split()) or "mc"
    for where, item in conv.objects(items):
        conv.add(where, item.get("id"), lambda item=item, where=where: _mc_row(conv, item, where, prefix))
