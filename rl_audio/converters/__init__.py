"""Converters from local copies of public benchmark releases into the project's JSONL manifest.

    python -m rl_audio.converters <format> INPUT --out MANIFEST.jsonl [--audio-dir DIR] [options]
    python -m rl_audio.converters <format> --help

Formats: ``audiogrounding`` (v1 and v2 JSON), ``clotho-moment`` (JSONL), ``unav100`` (database JSON), ``desed``
(strong-label TSV + durations TSV), ``ftar`` (JSON per task), ``mmau`` (test-mini JSON), ``spotsound-bench``
(assumed format, see ``docs/evaluation.md``); ``negatives`` adds SpotSound negative queries to any grounding
manifest. Python API: :func:`convert`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from ..data import add_negatives_with_report
from .common import Conversion, ConverterError, RowProblem
from .events import convert_desed, convert_ftar
from .grounding import convert_audiogrounding, convert_clotho_moment, convert_spotsound_bench, convert_unav100
from .qa import convert_mmau

logger = logging.getLogger(__name__)

CONVERTERS: dict[str, Callable[..., None]] = {
    "audiogrounding": convert_audiogrounding,
    "clotho-moment": convert_clotho_moment,
    "unav100": convert_unav100,
    "desed": convert_desed,
    "ftar": convert_ftar,
    "mmau": convert_mmau,
    "spotsound-bench": convert_spotsound_bench,
}


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
    **options,
) -> tuple[list[dict], Counter]:
    """Rows converted from ``source`` by converter ``name`` and the skipped items by reason.

    ``audio_dir`` defaults to the input's folder. ``window_tolerance``: seconds a window may exceed
    ``[0, duration]`` before it is invalid (it is clamped). ``check_audio``: compare given durations with the audio
    headers. ``negatives``: SpotSound negative queries per clip (:func:`rl_audio.data.add_negatives`: existence rows
    answered "No.", and an existence row per positive; no grounding row for an absent event). ``options`` go to the converter (e.g. ``version``, ``durations``, ``task``).

    Raises:
        ConverterError: bad input (file, item and field named), unless ``skip_invalid`` covers it.
    """
    if name not in CONVERTERS:
        raise ValueError(f"unknown converter {name!r}; converters: {', '.join(CONVERTERS)}")
    conv = Conversion(
        source, audio_dir, skip_invalid=skip_invalid, window_tolerance=window_tolerance, check_audio=check_audio
    )
    CONVERTERS[name](conv, **options)
    for kind, message in sorted(conv.first_error.items()):
        logger.warning("skipped %d item(s) (%s); first: %s", conv.skipped[kind], kind, message)
    rows, skipped = conv.rows, Counter(conv.skipped)
    if not rows:
        raise ConverterError(f"{source}: no rows converted" + (f" (skipped: {dict(skipped)})" if skipped else ""))
    if negatives:
        rows, counts = add_negatives_with_report(rows, seed=seed, per_clip=negatives, skip_missing=skip_invalid)
        if counts["skipped_no_negative"]:
            skipped["no_negative"] += counts["skipped_no_negative"]
        logger.info("negatives: %s", dict(counts))
    return rows, skipped


__all__ = ["CONVERTERS", "Conversion", "ConverterError", "RowProblem", "convert"]
