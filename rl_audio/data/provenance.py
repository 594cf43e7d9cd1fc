"""Where a manifest row came from, and the guard that keeps benchmark evaluation splits out of training.

Converters write ``meta.provenance`` into every row::

    {"converter": "mmau", "dataset": "MMAU", "split": "test-mini", "eval_benchmark": "MMAU"}

``eval_benchmark`` names the benchmark whose evaluation split the row comes from (``null`` for a training or
development split, and when the split is not known). Training on such rows would inflate the very number the
papers report (TGSR Tables 2-3 evaluate on MMAU test-mini), so :func:`check_training_rows` refuses them, or only
warns when the recipe sets ``allow_eval_split_training: true``. Evaluation reads them freely.

Rows without provenance (manifests written before it was recorded, hand-made data) load as before and pass the
guard, with one exception: rows the MMAU or SpotSound-Bench converters wrote earlier (``meta.source`` ``mmau``,
``spotsound-bench`` or ``spotsound``), since every split of those releases is an evaluation split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

PROVENANCE = "provenance"
"""The ``meta`` key of a row's provenance."""

PROVENANCE_FIELDS = ("converter", "dataset", "split", "eval_benchmark")

OVERRIDE_KEY = "allow_eval_split_training"
"""The recipe key that turns the guard's error into a warning."""

# meta.source of rows converted before provenance was recorded, from releases that are evaluation sets throughout
LEGACY_EVAL_SOURCES = {"mmau": "MMAU", "spotsound-bench": "SpotSound-Bench", "spotsound": "SpotSound-Bench"}


class EvalSplitError(ValueError):
    """A training manifest holds rows of a benchmark's evaluation split; the message names file, line,
    benchmark, split and the recipe key that overrides it."""


def make_provenance(converter: str, dataset: str, split: str | None, eval_benchmark: str | None = None) -> dict:
    """The ``meta.provenance`` object of a converted row.

    >>> make_provenance("mmau", "MMAU", "test-mini", "MMAU")
    {'converter': 'mmau', 'dataset': 'MMAU', 'split': 'test-mini', 'eval_benchmark': 'MMAU'}
    """
    return {"converter": converter, "dataset": dataset, "split": split, "eval_benchmark": eval_benchmark}


def provenance_problem(meta: Mapping) -> str | None:
    """What is wrong with ``meta.provenance`` (None when it is absent or well formed); :func:`validate_row` turns
    it into an error of field ``meta``.

    >>> provenance_problem({"provenance": {"split": 3}})
    'provenance.split: expected a string or null, got 3'
    """
    if PROVENANCE not in meta:
        return None
    value = meta[PROVENANCE]
    if not isinstance(value, Mapping):
        return f"provenance: expected an object, got {value!r:.80}"
    unknown = sorted(set(value) - set(PROVENANCE_FIELDS))
    if unknown:
        return f"provenance: unknown key {unknown[0]!r} (valid keys: {', '.join(PROVENANCE_FIELDS)})"
    for key in PROVENANCE_FIELDS:
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            return f"provenance.{key}: expected a string or null, got {item!r:.80}"
    return None


def eval_split_of(row: Mapping) -> tuple[str, str] | None:
    """``(benchmark, split)`` when ``row`` comes from a benchmark's evaluation split, else None.

    >>> eval_split_of({"meta": {"provenance": make_provenance("meld", "MELD", "test", "MELD")}})
    ('MELD', 'test')
    >>> eval_split_of({"meta": {"provenance": make_provenance("meld", "MELD", "train")}}) is None
    True
    >>> eval_split_of({"meta": {"source": "mmau"}})  # converted before provenance was recorded
    ('MMAU', 'unrecorded')
    """
    meta = row.get("meta") or {}
    provenance = meta.get(PROVENANCE)
    if isinstance(provenance, Mapping):
        benchmark = provenance.get("eval_benchmark")
        return (benchmark, provenance.get("split") or "unrecorded") if benchmark else None
    legacy = LEGACY_EVAL_SOURCES.get(meta.get("source"))
    return (legacy, "unrecorded") if legacy else None


def check_training_rows(
    path: str | os.PathLike, rows: Sequence[Mapping], lines: Mapping[str, int], *, allow: bool = False
) -> int:
    """Refuse (or, with ``allow``, warn about) rows of ``path`` that come from a benchmark's evaluation split.

    Args:
        path: the manifest, named in the message.
        rows: its rows.
        lines: 1-based line of each row id (:attr:`SkipReport.lines`), for the message.
        allow: warn instead of raising (the recipe's ``allow_eval_split_training``).

    Returns:
        The number of such rows.

    Raises:
        EvalSplitError: ``<file>:<line>: row <id> is from the <split> split of <benchmark> ...`` for the first one.
    """
    found = [(row, split) for row in rows if (split := eval_split_of(row))]
    if not found:
        return 0
    (first, (benchmark, split)) = found[0]
    where = f"{path}:{lines.get(first['id'], '?')}"
    what = f"row {first['id']!r} is from the {split} split of {benchmark}, an evaluation split of a benchmark"
    count = f"{len(found)} of the {len(rows)} rows of this manifest are"
    if allow:
        logger.warning("%s: %s; %s; training on them because %s is true", where, what, count, OVERRIDE_KEY)
        return len(found)
    raise EvalSplitError(
        f"{where}: {what} ({count}). Training on it would inflate the results reported on {benchmark}: use it in "
        f"eval_manifests, or set `{OVERRIDE_KEY}: true` in the recipe (--{OVERRIDE_KEY} true) to train on it "
        "anyway, with a warning."
    )
