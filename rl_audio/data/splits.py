"""The recipe's data splits: its manifests (or the embedded default data set) as rows for training and evaluation.

SFT and GRPO read their training rows and evaluation its rows through :func:`load_rows` and :func:`manifests_for`,
so the task filter, the audio-length limit, the evaluation-split guard and the seeded subset apply alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..configs import AudioArguments

logger = logging.getLogger(__name__)


def manifests_for(cfg: AudioArguments, split: str) -> list[str]:
    """The recipe's manifests for `split` ('train' or 'eval'); the embedded default data set when none are given."""
    given = cfg.train_manifests if split == "train" else cfg.eval_manifests
    if given:
        key = "train_manifests" if split == "train" else "eval_manifests"
        missing = [str(p) for p in given if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(
                f"{key}: {', '.join(missing)} not found (relative paths are read from {os.getcwd()}). Build a "
                "manifest with `python -m rl_audio.data {synth,sta,negatives,validate,default} --help` or a "
                f"converter (`python -m rl_audio.converters --help`; docs/data.md), or set {key} to yours; leave "
                f"{key} empty to use the embedded default data."
            )
        return list(given)
    from .default import build_default_dataset

    # One process builds the files, the others wait and then reuse them (concurrent writers of the same wav files
    # fail). Global main first, then each node's main: right for a data_dir shared by all nodes or local to each.
    first = getattr(cfg, "main_process_first", None)
    with first(local=False) if first else contextlib.nullcontext(), first() if first else contextlib.nullcontext():
        paths = build_default_dataset(
            cfg.data_dir, num_train=cfg.default_data_clips, num_test=max(8, cfg.default_data_clips // 4)
        )
    return [str(paths["train" if split == "train" else "test"])]


def load_rows(cfg: AudioArguments, split: str):
    """A `datasets.Dataset` of manifest rows (paths, not audio), filtered to `cfg.tasks`.

    Training rows converted from a benchmark's evaluation split are refused (a warning with
    `allow_eval_split_training`); evaluation rows are not checked (rl_audio.data.provenance)."""
    from .manifest import manifest_to_dataset

    paths = manifests_for(cfg, split)
    guard = "allow" if split != "train" else "warn" if cfg.allow_eval_split_training else "refuse"
    ds = manifest_to_dataset(paths, skip_invalid=cfg.skip_invalid, eval_splits=guard)
    if cfg.tasks:
        ds = ds.filter(lambda r: r["task"] in cfg.tasks)
    too_long = [r["id"] for r in ds if r["duration"] > cfg.max_audio_seconds]
    if too_long:
        raise ValueError(
            f"{len(too_long)} rows are longer than max_audio_seconds={cfg.max_audio_seconds}: {too_long[:5]}"
        )
    if len(ds) == 0:
        raise ValueError(f"no rows to use in {paths} (tasks filter: {cfg.tasks or 'none'})")
    limit = getattr(cfg, "max_train_samples", None) if split == "train" else None
    if limit is not None:
        ds = subset_rows(ds, limit, getattr(cfg, "seed", 0))
    logger.info("%s: %d rows from %s", split, len(ds), ", ".join(paths))
    return ds


def subset_rows(ds, limit: int, seed: int):
    """`limit` rows of `ds` drawn without replacement by `seed` (the same rows for the same seed and data), kept
    in manifest order; all rows, with a warning, when `ds` has no more than `limit`."""
    import numpy as np

    if limit < 1:
        raise ValueError(f"max_train_samples must be >= 1, got {limit}")
    if limit >= len(ds):
        if limit > len(ds):
            logger.warning("max_train_samples=%d but only %d training rows: using all of them", limit, len(ds))
        return ds
    picked = np.random.default_rng(seed).choice(len(ds), size=limit, replace=False)
    return ds.select(sorted(picked.tolist()))
