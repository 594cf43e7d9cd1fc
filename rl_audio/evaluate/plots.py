"""Figures: examples drawn as in SpotSound Fig. 3 (the audio with reference and predicted windows on one
timeline), and the IoU histogram of grounding answers.

Each example figure has the log-power spectrogram of the clip on top and, on the same time axis below, one lane for
the reference windows (or events) and one for the model's, with the query, the IoU and the answer text in the
title. matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import logging
import random
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rewards.tasks import is_positive  # noqa: E402

from ..data import load_audio  # noqa: E402

logger = logging.getLogger(__name__)

TIMELINE_TASKS = ("grounding", "sta", "sed", "dac")
SR = 16000
_REF_COLOR, _PRED_COLOR = "#2e7d32", "#c62828"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


def _spans(row: dict, parsed: dict) -> tuple[list[tuple], list[tuple]]:
    """Reference and predicted ``(start, end, label)`` lists of a row."""
    if row["task"] in ("grounding", "sta"):
        return [(s, e, "") for s, e in row["windows"]], [(s, e, "") for s, e in parsed.get("windows") or []]
    reference = [(e["onset"], e["offset"], e["label"]) for e in row["events"]]
    return reference, [tuple(e) for e in parsed.get("events") or []]


def _printable(text: str) -> str:
    """Model output can hold control characters and glyphs no font has: keep what prints."""
    return "".join(ch if ch.isprintable() and ord(ch) < 0x2500 else "?" for ch in text)


def _lane(ax, spans: list[tuple], y: float, color: str, duration: float) -> None:
    for start, end, label in spans:
        width = max(end - start, duration * 0.004)  # a zero-length prediction stays visible
        ax.broken_barh([(start, width)], (y - 0.35, 0.7), facecolors=color, alpha=0.85)
        if label:
            ax.text(
                start, y, " " + _printable(label[:30]), va="center", ha="left", fontsize=7, color="white", clip_on=True
            )


def plot_example(row: dict, prediction: str, parsed: dict, score: dict, path: Path) -> Path:
    """One example figure (SpotSound Fig. 3 style) written to ``path`` (PNG)."""
    duration = row["duration"]
    fig, (ax_spec, ax_time) = plt.subplots(
        2, 1, figsize=(10, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}, constrained_layout=True
    )
    try:
        wav = load_audio(row["audio"], sr=SR, check_silent=False)
        with np.errstate(divide="ignore"):  # digital silence: log10(0) is -inf, drawn as the darkest colour
            ax_spec.specgram(wav, NFFT=512, Fs=SR, noverlap=384, cmap="magma", scale="dB")
        ax_spec.set_ylabel("frequency (Hz)")
    except ValueError as err:  # AudioError: draw the timeline anyway
        ax_spec.text(0.5, 0.5, f"audio unavailable: {err}", ha="center", va="center", transform=ax_spec.transAxes)
    reference, predicted = _spans(row, parsed)
    for ax in (ax_spec, ax_time):
        for start, end, _ in reference:
            ax.axvspan(start, end, color=_REF_COLOR, alpha=0.18 if ax is ax_spec else 0.06)
    _lane(ax_time, reference, 1, _REF_COLOR, duration)
    _lane(ax_time, predicted, 0, _PRED_COLOR, duration)
    ax_time.set_yticks([0, 1], ["prediction", "reference"])
    ax_time.set_ylim(-0.7, 1.7)
    ax_time.set_xlim(0, duration)
    ax_time.set_xlabel("time (s)")
    ax_time.grid(axis="x", alpha=0.3)
    if not parsed.get("ok"):
        ax_time.text(duration / 2, 0, "unparseable answer", ha="center", va="center", fontsize=8, color=_PRED_COLOR)
    query = _printable(row.get("query") or row["task"])
    detail = (
        f"IoU {score['iou']:.2f}" if "iou" in score else (f"Eb-F1 {score['eb_f1']:.2f}" if "eb_f1" in score else "")
    )
    if row["task"] == "grounding" and not is_positive(row):
        detail = "negative query: " + ("absence stated" if score.get("rejected") else "not rejected")
    answer = textwrap.shorten(_printable(prediction.replace("\n", " ")) or "(empty)", 140)
    ax_spec.set_title(
        f"{row['id']} [{row['task']}] {textwrap.shorten(query, 70)}  {detail}\nanswer: {answer}", fontsize=9
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_iou_histogram(ious: list[float], path: Path, title: str = "grounding IoU") -> Path:
    """Histogram of per-query IoU in 10 bins over [0, 1], with the mean marked."""
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.hist(ious, bins=np.linspace(0, 1, 11), color="#1565c0", edgecolor="white")
    if ious:
        mean = float(np.mean(ious))
        ax.axvline(mean, color="black", linestyle="--", label=f"mIoU {mean:.3f}")
        ax.legend()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_ylabel("queries")
    ax.set_title(f"{title} (n={len(ious)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sample_examples(rows: list[dict], n: int, seed: int) -> list[dict]:
    """Up to ``n`` rows with a timeline, drawn reproducibly, spread over the tasks present."""
    candidates = [r for r in rows if r["task"] in TIMELINE_TASKS]
    rng = random.Random(seed)
    by_task = {t: [r for r in candidates if r["task"] == t] for t in TIMELINE_TASKS}
    for group in by_task.values():
        rng.shuffle(group)
    picked: list[dict] = []
    while len(picked) < n and any(by_task.values()):
        for task in TIMELINE_TASKS:
            if by_task[task] and len(picked) < n:
                picked.append(by_task[task].pop())
    return picked


def write_plots(rows: list[dict], records: dict[str, dict], scores: dict[str, dict], cfg, out_dir: Path) -> list[Path]:
    """The example figures and IoU histograms under ``out_dir`` (``plots/``); returns the files written."""
    written = []
    for k, row in enumerate(sample_examples(rows, cfg.num_plot_examples, cfg.plot_seed)):
        record, score = records[row["id"]], scores[row["id"]]
        path = out_dir / "examples" / f"{k:02d}_{_safe_name(row['id'])}.png"
        written.append(plot_example(row, record["prediction"], score["parsed"], score, path))
    for task in ("grounding", "sta"):
        ious = [scores[r["id"]]["iou"] for r in rows if r["task"] == task and "iou" in scores[r["id"]]]
        if ious:
            written.append(plot_iou_histogram(ious, out_dir / f"iou_histogram_{task}.png", f"{task} IoU"))
    logger.info("wrote %d figures to %s", len(written), out_dir)
    return written
