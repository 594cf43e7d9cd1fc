"""Synthetic needle-in-a-haystack grounding data, following SpotSound (arXiv:2604.13023) §3.1.

Each clip is a background of ``min_len``-``max_len`` seconds (SpotSound: 40-60 s) into which one or more
foreground events are placed, start sampled uniformly, events of one clip never overlapping. The ground truth of a
query is the insertion interval, ``[start, start + event duration]``. Levels are RMS-based: the foreground gain is
jittered by +-5 dB around a nominal level and the background sits at -10 +- 5 dB relative to the foreground.

All times lie on a 10 ms grid, so targets written with two decimals ("From 2.50 seconds to 4.00 seconds.") are
exact. Each clip gets its own random stream, ``default_rng([seed, crc32(id_prefix), clip_index])``, so that the
same seed gives byte-identical wavs and manifest.

Rows per clip: one ``grounding`` and one ``existence`` row (``exists=True``) per distinct class in the clip, an
optional ``sed`` row listing every event (label = the caption), and optional negatives (``negatives.py``: an
``existence`` row with ``exists=False`` per absent query; never a grounding row about an absent event). Each row's
``meta.aliases`` lists the other captions of the classes in the clip, so that no negative is a paraphrase of a
present sound ("an upward chirp" for a clip with "a rising whistle").
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import write_wav
from .manifest import write_manifest
from .negatives import add_negatives
from .sources import FolderBackgrounds, FolderForegrounds, ProceduralBackgrounds, ProceduralForegrounds

logger = logging.getLogger(__name__)

GRID = 0.01  # seconds: every start, duration and clip length is a multiple of this
PEAK_LIMIT = 0.99


@dataclass
class SynthConfig:
    """Parameters of :func:`build_synthetic` (defaults follow SpotSound §3.1)."""

    num_clips: int = 100
    min_len: float = 40.0  # clip (background) length range, seconds
    max_len: float = 60.0
    min_event: float = 1.0  # foreground event duration range, seconds
    max_event: float = 5.0
    min_events: int = 1  # events per clip
    max_events: int = 1
    min_gap: float = 0.5  # seconds of background between two events of one clip
    allow_repeats: bool = False  # one class may occur several times in a clip (its row then has several windows)
    sample_rate: int = 16000
    seed: int = 0
    fg_level_db: float = -20.0  # nominal foreground RMS, dBFS
    fg_jitter_db: float = 5.0  # foreground gain jitter, +- dB
    bg_rel_db: float = -10.0  # background RMS relative to the foreground RMS, dB
    bg_jitter_db: float = 5.0  # +- dB around bg_rel_db
    id_prefix: str = "synth"
    sed_rows: bool = False
    negatives: bool = False  # add_negatives: one absent query per clip, as an existence row answered "No."
    shift_events: bool = False  # SpotSound App. B.3: the same clips with each event moved (see shifted_starts)
    foreground_dir: str | None = None
    background_dir: str | None = None

    def validate(self) -> None:
        """Raise ValueError when the ranges are empty or the events cannot fit into the shortest clip."""
        checks = {
            "num_clips >= 1": self.num_clips >= 1,
            "0 < min_len <= max_len": 0 < self.min_len <= self.max_len,
            "0 < min_event <= max_event": 0 < self.min_event <= self.max_event,
            "1 <= min_events <= max_events": 1 <= self.min_events <= self.max_events,
            "min_gap >= 0": self.min_gap >= 0,
            "sample_rate is a multiple of 100": self.sample_rate > 0 and self.sample_rate % 100 == 0,
            "max_events * max_event + (max_events - 1) * min_gap <= min_len": (
                self.max_events * self.max_event + (self.max_events - 1) * self.min_gap <= self.min_len + 1e-9
            ),
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid synth config: need {'; '.join(failed)} ({self})")


def _grid(seconds: float) -> int:
    return int(round(seconds / GRID))


def place_events(rng: np.random.Generator, clip_units: int, durations: list[int], gap: int) -> list[int]:
    """Uniformly random non-overlapping start positions (grid units) for events of the given durations, in order.

    The free space ``clip - sum(durations) - gaps`` is split by sorted uniform draws ("stars and bars"), so that
    for one event the start is uniform over ``[0, clip - duration]`` as in SpotSound.
    """
    free = clip_units - sum(durations) - gap * (len(durations) - 1)
    if free < 0:
        raise ValueError(f"events of {sum(durations)} units and gaps do not fit in {clip_units} units")
    offsets = np.sort(rng.integers(0, free + 1, size=len(durations)))
    starts, used = [], 0
    for k, (offset, duration) in enumerate(zip(offsets, durations)):
        starts.append(int(offset) + used + k * gap)
        used += duration
    return starts


def shifted_starts(seed: int, clip_units: int, durations: list[int], original: list[int], gap: int) -> list[int]:
    """New start positions for the events of a clip whose original starts are ``original`` (SpotSound App. B.3).

    A single event moves to a position drawn uniformly among those whose window does not overlap the original one
    (when the clip is too short for that, to the end farther from it). Several events are placed afresh, as
    :func:`place_events` does, from the same per-clip stream: they keep their order and gaps but may overlap their
    old windows. The stream is seeded by the clip's geometry, so every other draw of the clip is unchanged.
    """
    rng = np.random.default_rng([seed, clip_units, *durations, *original])
    if len(durations) != 1:
        return place_events(rng, clip_units, durations, gap)
    start, length = original[0], durations[0]
    allowed = [s for s in range(clip_units - length + 1) if s + length <= start or s >= start + length]
    if not allowed:
        return [0 if start > clip_units - length - start else clip_units - length]
    return [int(rng.choice(allowed))]


def _make_sources(config: SynthConfig):
    fg = FolderForegrounds(config.foreground_dir) if config.foreground_dir else ProceduralForegrounds()
    bg = FolderBackgrounds(config.background_dir) if config.background_dir else ProceduralBackgrounds()
    return fg, bg


def _db(value: float) -> float:
    return 10 ** (value / 20)


def render_clip(config: SynthConfig, index: int, fg, bg) -> tuple[np.ndarray, dict]:
    """Mix clip ``index``: returns the waveform ``(T,)`` and its annotation ``{duration, events, background, ...}``."""
    sr, per_unit = config.sample_rate, int(round(config.sample_rate * GRID))
    rng = np.random.default_rng([config.seed, zlib.crc32(config.id_prefix.encode()), index])
    clip_units = _grid(rng.uniform(config.min_len, config.max_len))
    k = int(rng.integers(config.min_events, config.max_events + 1))
    classes = rng.choice(len(fg.captions), size=k, replace=config.allow_repeats)
    caption = {int(c): fg.captions[int(c)][int(rng.integers(len(fg.captions[int(c)])))] for c in classes}
    waves, min_n = [], max(1, _grid(config.min_event)) * per_unit
    for c in classes:
        wav = fg.render(int(c), rng, _grid(rng.uniform(config.min_event, config.max_event)) * per_unit, sr, min_n)
        waves.append(wav[: wav.size // per_unit * per_unit])  # real files may be shorter: keep them on the grid
    durations, gap = [w.size // per_unit for w in waves], _grid(config.min_gap)
    starts = place_events(rng, clip_units, durations, gap)
    if config.shift_events:  # drawn aside, so the gains and the background below are those of the unshifted clip
        starts = shifted_starts(config.seed, clip_units, durations, starts, gap)
    fg_db = [config.fg_level_db + rng.uniform(-config.fg_jitter_db, config.fg_jitter_db) for _ in waves]
    bg_db = float(np.mean(fg_db)) + config.bg_rel_db + rng.uniform(-config.bg_jitter_db, config.bg_jitter_db)
    background, bg_name = bg.render(rng, clip_units * per_unit, sr)
    mix = background * _db(bg_db)  # (T,)
    events = []
    for c, wav, start, gain_db in zip(classes, waves, starts, fg_db):
        mix[start * per_unit : start * per_unit + wav.size] += wav * _db(gain_db)
        onset, offset = round(start * GRID, 2), round((start + wav.size // per_unit) * GRID, 2)
        aliases = [text for text in fg.captions[int(c)] if text != caption[int(c)]]  # the class's other captions
        events.append(
            {"onset": onset, "offset": offset, "label": caption[int(c)], "class": int(c), "aliases": aliases}
        )
    peak = float(np.max(np.abs(mix)))
    scale = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0  # keeps every relative level, hence the labels
    info = {
        "duration": round(clip_units * GRID, 2),
        "events": events,
        "background": bg_name,
        "fg_db": [round(float(g + 20 * np.log10(scale)), 2) for g in fg_db],
        "bg_db": round(float(bg_db + 20 * np.log10(scale)), 2),
    }
    return mix * scale, info


def clip_rows(clip_id: str, audio: str, info: dict, *, sed_rows: bool) -> list[dict]:
    """Manifest rows of one clip: grounding + existence per distinct class, and optionally a sed row."""
    rows, by_label = [], {}
    for event in info["events"]:
        by_label.setdefault(event["label"], []).append([event["onset"], event["offset"]])
    snr = [round(g - info["bg_db"], 2) for g in info["fg_db"]]
    # other captions of the classes present: add_negatives never asks about them as absent (a paraphrase of what
    # is in the clip is not a negative)
    aliases = sorted({text for event in info["events"] for text in event.get("aliases", [])})
    meta = {"source": "synth", "background": info["background"], "snr_db": snr, "aliases": aliases}
    base = {"audio": audio, "duration": info["duration"], "events": [], "choices": [], "answer": "", "meta": meta}
    for j, (label, windows) in enumerate(by_label.items()):
        common = {**base, "query": label, "windows": sorted(windows), "exists": True}
        rows.append({**common, "id": f"{clip_id}-g{j}", "task": "grounding"})
        rows.append({**common, "id": f"{clip_id}-e{j}", "task": "existence"})
    if sed_rows:
        events = [{k: e[k] for k in ("onset", "offset", "label")} for e in info["events"]]
        rows.append({**base, "id": f"{clip_id}-sed", "task": "sed", "query": "", "windows": [], "events": events})
    return rows


def build_synthetic(
    out_dir: str | os.PathLike, config: SynthConfig, *, manifest_name: str = "manifest.jsonl", progress: bool = True
) -> Path:
    """Render ``config.num_clips`` clips to ``out_dir/audio/<id>.wav`` (16-bit PCM) and write the manifest.

    A build that fails (a bad source file, an interruption) removes the wavs it wrote and writes no manifest; the
    error names the clip and the cause.

    Returns:
        The manifest path, ``out_dir/manifest_name``; its audio paths are relative to ``out_dir``.
    """
    config.validate()
    out_dir = Path(out_dir)
    fg, bg = _make_sources(config)
    if not config.allow_repeats and config.max_events > len(fg.captions):
        raise ValueError(f"max_events={config.max_events} > {len(fg.captions)} classes; set allow_repeats")
    rows, written = [], []
    try:
        for index in tqdm(range(config.num_clips), desc=f"synth {config.id_prefix}", disable=not progress):
            clip_id = f"{config.id_prefix}-{index:06d}"
            try:
                wav, info = render_clip(config, index, fg, bg)
            except ValueError as err:
                raise ValueError(f"clip {clip_id}: {err}") from err
            written.append(out_dir / "audio" / f"{clip_id}.wav")
            write_wav(written[-1], wav, config.sample_rate)
            rows.extend(clip_rows(clip_id, f"audio/{clip_id}.wav", info, sed_rows=config.sed_rows))
        if config.negatives:
            rows = add_negatives(rows, seed=config.seed)
        path = write_manifest(rows, out_dir / manifest_name)
    except BaseException:  # a failed build leaves nothing behind, not half a dataset
        for wav_path in written:
            wav_path.unlink(missing_ok=True)
        raise
    logger.info("wrote %d clips and %d rows to %s", config.num_clips, len(rows), path)
    return path


def config_dict(config: SynthConfig) -> dict:
    """The config as a JSON-friendly dict (for caching and logs)."""
    return dataclasses.asdict(config)
