"""The study's needle-in-a-haystack data: base, train, validation and test splits, a shifted-position test.

Clips are built with ``rl_audio.data.build_synthetic`` (SpotSound §3.1): one procedural event per clip on a
procedural background, with SpotSound negatives (``add_negatives``: per clip one absent query as an existence row
answered "No.", and an existence row for the positive; no grounding row asks about an absent event). The event is a small fraction of the clip, as in
SpotSound-Bench (under 10 %): 5-6 s clips with 0.25-0.45 s events, i.e. 4-9 % of the clip. The level is high
(background 30 +- 3 dB under the event): NOTES.md's probe learned nothing at about 15 dB SNR. Why 5-6 s rather
than 10-12 s: README.md in this folder (step time and what a 1 M-parameter model learns in the budget).

``base`` is not part of the needle-in-a-haystack task: the same clip lengths with long events (1-2 s, 17-40 % of
the clip), the data of the stand-in for a pretrained audio LM (README.md, "Base model"). Every split draws from its
own random stream (``id_prefix``): ``base``, ``train``, ``val`` (model selection only) and ``test``. ``shifted`` is
SpotSound Appendix B.3's temporal event shifting: the *same* test clips (same event waveform, gain and background)
with each event re-inserted at another random position that does not overlap the original one.

Subsets written next to the splits (manifests for ``--train_manifests`` / ``--eval_manifests``):

- ``{base,train,val,test,shifted}/grounding.jsonl``: positive grounding rows (the base model, rows 1, 2 and 4 train
  on these: TimePro-RL's AG task has no negatives, and localisation is what those rows measure);
- ``train/with_negatives.jsonl``: grounding and existence rows of the positives, and the negatives' existence rows
  (row 3, SpotSound);
- ``train/without_negatives.jsonl``: the same without the negative rows (row 3's ablation);
- ``test/with_negatives.jsonl``: grounding and existence of the positives, existence of the negatives (row 3's
  evaluation; its ``cascaded`` metrics are SpotSound's presence-then-grounding inference).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rl_audio.data import SynthConfig, build_synthetic, load_manifest, write_manifest

logger = logging.getLogger("replicate.niah")

DATA_VERSION = 4  # bump when the construction changes, to invalidate cached data (4: negatives: existence only)


@dataclass(frozen=True)
class NiahSpec:
    """Sizes and difficulty of the study data (clips per split; every clip holds one event)."""

    train: int = 512
    val: int = 64
    test: int = 64
    min_len: float = 5.0
    max_len: float = 6.0
    min_event: float = 0.25
    max_event: float = 0.45
    base: int = 1024  # clips of the base model's (pre-)training split: same clips lengths, long events
    base_min_event: float = 1.0
    base_max_event: float = 2.0
    base_events: int = 1  # events per base clip (2: the query's caption decides which one to localise)
    bg_rel_db: float = -30.0
    jitter_db: float = 3.0
    seed: int = 0

    def synth(self, split: str, clips: int) -> SynthConfig:
        events = (self.base_min_event, self.base_max_event) if split == "base" else (self.min_event, self.max_event)
        count = self.base_events if split == "base" else 1
        return SynthConfig(
            min_events=count,
            max_events=count,
            num_clips=clips,
            min_len=self.min_len,
            max_len=self.max_len,
            min_event=events[0],
            max_event=events[1],
            bg_rel_db=self.bg_rel_db,
            bg_jitter_db=self.jitter_db,
            fg_jitter_db=self.jitter_db,
            negatives=True,
            seed=self.seed,
            id_prefix=split,
        )

    @property
    def max_event_fraction(self) -> float:
        return self.max_event / self.min_len


def _write_subsets(split_dir: Path, rows: list[dict], split: str) -> dict[str, str]:
    positive = [r for r in rows if r["exists"] is not False]
    subsets = {"grounding": [r for r in positive if r["task"] == "grounding"]}
    if split in ("train", "test"):
        subsets["with_negatives"] = [r for r in rows if r["task"] in ("grounding", "existence")]
    if split == "train":
        subsets["without_negatives"] = [r for r in positive if r["task"] in ("grounding", "existence")]
    return {name: str(write_manifest(sub, split_dir / f"{name}.jsonl")) for name, sub in subsets.items()}


def _rename(rows: list[dict], old: str, new: str) -> list[dict]:
    """Ids unique across manifests (one evaluation reads test and shifted together)."""
    out = []
    for row in rows:
        meta = dict(row["meta"])
        if "negative_of" in meta:
            meta["negative_of"] = meta["negative_of"].replace(old, new, 1)
        out.append({**row, "id": row["id"].replace(old, new, 1), "meta": meta})
    return out


def build(out_dir: str | Path, spec: NiahSpec) -> dict[str, dict[str, str]]:
    """Build (or reuse) every split and subset; returns ``{split: {subset: manifest path}}``."""
    out_dir = Path(out_dir)
    index_path = out_dir / "index.json"
    params = {"version": DATA_VERSION, **asdict(spec)}
    if index_path.exists():
        index = json.loads(index_path.read_text())
        if index.get("params") == params and all(
            Path(p).exists() for s in index["paths"].values() for p in s.values()
        ):
            return index["paths"]
    index_path.unlink(missing_ok=True)  # a build that stops halfway must not look complete
    paths = {}
    for split, clips in (("base", spec.base), ("train", spec.train), ("val", spec.val), ("test", spec.test)):
        manifest = build_synthetic(out_dir / split, spec.synth(split, clips), progress=False)
        paths[split] = _write_subsets(out_dir / split, load_manifest(manifest), split)
    shifted = dataclasses.replace(spec.synth("test", spec.test), shift_events=True)
    manifest = build_synthetic(out_dir / "shifted", shifted, progress=False)
    rows = _rename(load_manifest(manifest), "test-", "shifted-")
    write_manifest(rows, manifest)
    paths["shifted"] = _write_subsets(out_dir / "shifted", rows, "shifted")
    index_path.write_text(json.dumps({"params": params, "paths": paths}, indent=2))
    logger.info("built the study data in %s", out_dir)
    return paths


def describe(paths: dict[str, dict[str, str]]) -> dict[str, dict]:
    """Rows and clips per manifest, and the event fraction of the clips (for the results file)."""
    out = {}
    for split, subsets in paths.items():
        for name, path in subsets.items():
            rows = load_manifest(path)
            fractions = [sum(e - s for s, e in r["windows"]) / r["duration"] for r in rows if r["windows"]]
            out[f"{split}/{name}"] = {
                "rows": len(rows),
                "clips": len({r["audio"] for r in rows}),
                "tasks": {t: sum(r["task"] == t for r in rows) for t in sorted({r["task"] for r in rows})},
                "event_fraction_max": round(max(fractions), 4) if fractions else None,
                "event_fraction_mean": round(float(np.mean(fractions)), 4) if fractions else None,
            }
    return out
