"""Converters from local copies of public benchmark releases into the project's JSONL manifest.

    python -m rl_audio.converters <format> INPUT --out MANIFEST.jsonl [--audio-dir DIR] [options]
    python -m rl_audio.converters <format> --help

Formats: ``audiogrounding`` (v1 and v2 JSON), ``clotho-moment`` (JSONL), ``unav100`` (database JSON), ``desed``
(strong-label TSV + durations TSV), ``ftar`` (JSON per task), ``mmau`` (test-mini JSON), ``spotsound-bench``
(assumed format, see ``docs/evaluation.md``), ``meld`` (MELD's CSVs: emotion/sentiment multiple choice),
``mc-jsonl`` (generic multiple-choice JSONL); ``negatives`` adds SpotSound negative queries to any grounding
manifest. Python API: :func:`convert`.

Every row records ``meta.provenance`` (converter, dataset, split, and the benchmark whose evaluation split it is);
``SOURCES`` declares each release's splits and which of them are evaluation splits, refused for training
(:mod:`rl_audio.data.provenance`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from ..data import add_negatives_with_report
from .common import Conversion, ConverterError, RowProblem, Source
from .events import DESED, FTAR, convert_desed, convert_ftar
from .grounding import (
    AUDIOGROUNDING,
    CLOTHO_MOMENT,
    SPOTSOUND_BENCH,
    UNAV100,
    convert_audiogrounding,
    convert_clotho_moment,
    convert_spotsound_bench,
    convert_unav100,
)
from .qa import MELD, MMAU, convert_mc_jsonl, convert_meld, convert_mmau

logger = logging.getLogger(__name__)

CONVERTERS: dict[str, Callable[..., None]] = {
    "audiogrounding": convert_audiogrounding,
    "clotho-moment": convert_clotho_moment,
    "unav100": convert_unav100,
    "desed": convert_desed,
    "ftar": convert_ftar,
    "mmau": convert_mmau,
    "spotsound-bench": convert_spotsound_bench,
    "meld": convert_meld,
    "mc-jsonl": convert_mc_jsonl,
}

SOURCES: dict[str, Source] = {
    "audiogrounding": AUDIOGROUNDING,
    "clotho-moment": CLOTHO_MOMENT,
    "unav100": UNAV100,
    "desed": DESED,
    "ftar": FTAR,
    "mmau": MMAU,
    "spotsound-bench": SPOTSOUND_BENCH,
    "meld": MELD,
    "mc-jsonl": Source("mc-jsonl"),  # the converter declares the dataset and its evaluation split itself
}


def _split(info: Source, source: str, split: str | None) -> str | None:
    """``split`` (a name the release uses, or one of its words), else the one the file name tells, else the
    release's default."""
    if split:
        return info.canonical(split)
    return info.infer(source) or info.default_split


def convert(
    name: str,
    source: str,
    *,
    audio_dir: str | None = None,
    skip_invalid: bool = False,
    window_tolerance: float = 0.05,
    check_audio: bool = False,
    negatives: int = 0,
    seed: int = 0,
    split: str | None = None,
    **options,
) -> tuple[list[dict], Counter]:
    """Rows converted from ``source`` by converter ``name`` and the skipped items by reason.

    ``audio_dir`` defaults to the input's folder. ``window_tolerance``: seconds a window may exceed
    ``[0, duration]`` before it is invalid (it is clamped). ``check_audio``: compare given durations with the audio
    headers. ``negatives``: SpotSound negative queries per clip (:func:`rl_audio.data.add_negatives`: existence rows
    answered "No.", and an existence row per positive; no grounding row for an absent event). ``split``: the
    release's split the input is (default: told by the file name, e.g. ``test_sent_emo.csv``; an item's own split,
    such as UnAV-100's ``subset``, wins), recorded in ``meta.provenance``. ``options`` go to the converter (e.g.
    ``version``, ``durations``, ``task``).

    Raises:
        ConverterError: bad input (file, item and field named), unless ``skip_invalid`` covers it.
    """
    if name not in CONVERTERS:
        raise ValueError(f"unknown converter {name!r}; converters: {', '.join(CONVERTERS)}")
    info = SOURCES[name]
    conv = Conversion(
        source,
        audio_dir,
        skip_invalid=skip_invalid,
        window_tolerance=window_tolerance,
        check_audio=check_audio,
        converter=name,
        info=info,
        split=_split(info, source, split),
    )
    CONVERTERS[name](conv, **options)
    for kind, message in sorted(conv.first_error.items()):
        logger.warning("skipped %d item(s) (%s); first: %s", conv.skipped[kind], kind, message)
    rows, skipped = conv.rows, Counter(conv.skipped)
    if not rows:
        raise ConverterError(f"{source}: no rows converted" + (f" (skipped: {dict(skipped)})" if skipped else ""))
    if conv.info.eval_splits and any(row["meta"]["provenance"]["split"] is None for row in rows):
        logger.warning(
            "%s: the %s split of these rows is not known (the file name does not tell); pass --split (%s) so that "
            "rows of its evaluation split (%s) are refused for training",
            source,
            conv.info.dataset,
            ", ".join(conv.info.splits),
            ", ".join(conv.info.eval_splits),
        )
    if negatives:
        rows, counts = add_negatives_with_report(rows, seed=seed, per_clip=negatives, skip_missing=skip_invalid)
        if counts["skipped_no_negative"]:
            skipped["no_negative"] += counts["skipped_no_negative"]
        logger.info("negatives: %s", dict(counts))
    return rows, skipped


__all__ = ["CONVERTERS", "SOURCES", "Conversion", "ConverterError", "RowProblem", "Source", "convert"]
