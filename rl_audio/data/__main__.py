"""Command line of the data pipeline: ``python -m rl_audio.data {synth,sta,negatives,validate,default} --help``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .default import build_default_dataset
from .manifest import ManifestError, load_manifest, load_manifest_with_report, write_manifest
from .negatives import NegativeError, add_negatives_with_report
from .sta import TranscriptError, build_sta_manifest
from .stats import format_summary, summarize
from .synth import SynthConfig, build_synthetic

logger = logging.getLogger("rl_audio.data")


def _range(text: str) -> tuple[int, int]:
    """``"2"`` -> (2, 2); ``"1-3"`` -> (1, 3)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected N or N-M, got {text!r}") from err


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="synthetic needle-in-a-haystack grounding data (SpotSound §3.1)")
    d = SynthConfig()
    p.add_argument("--out", required=True, help="output folder (manifest.jsonl and audio/)")
    p.add_argument("--num-clips", type=int, default=d.num_clips)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--min-len", type=float, default=d.min_len, help="shortest clip, seconds")
    p.add_argument("--max-len", type=float, default=d.max_len, help="longest clip, seconds")
    p.add_argument("--min-event", type=float, default=d.min_event, help="shortest event, seconds")
    p.add_argument("--max-event", type=float, default=d.max_event, help="longest event, seconds")
    p.add_argument("--events-per-clip", type=_range, default=(1, 1), help="N or N-M (default 1)")
    p.add_argument("--min-gap", type=float, default=d.min_gap, help="seconds between events of a clip")
    p.add_argument("--allow-repeats", action="store_true", help="a class may occur several times in a clip")
    p.add_argument("--sample-rate", type=int, default=d.sample_rate)
    p.add_argument("--fg-jitter-db", type=float, default=d.fg_jitter_db)
    p.add_argument("--bg-rel-db", type=float, default=d.bg_rel_db, help="background level re foreground, dB")
    p.add_argument("--bg-jitter-db", type=float, default=d.bg_jitter_db)
    p.add_argument("--id-prefix", default=d.id_prefix)
    p.add_argument("--sed", action="store_true", help="also write one sed row per clip")
    p.add_argument("--negatives", action="store_true", help="add SpotSound negatives (existence rows answered No)")
    p.add_argument(
        "--shift-events",
        action="store_true",
        help="the same clips as without it, each event moved to a new position (SpotSound App. B.3)",
    )
    p.add_argument("--foreground-dir", help="real foregrounds: one subfolder per class, named by its caption")
    p.add_argument("--background-dir", help="real backgrounds: audio files at any depth")


def _add_others(sub) -> None:
    p = sub.add_parser("sta", help="STA rows from whisper-timestamped JSON (TGSR §3.1)")
    p.add_argument("--whisper-dir", required=True, help="whisper-timestamped .json files")
    p.add_argument("--audio-dir", required=True, help="audio files, matched to transcripts by stem")
    p.add_argument("--out", required=True, help="manifest to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--span",
        choices=("ngram", "sentence"),
        default="ngram",
        help="sentence: spoken sentences, read from the punctuation on the words (TGSR §3.1, recipes/sta.yaml); "
        "ngram: runs of consecutive words of one segment",
    )
    p.add_argument("--min-words", type=int, default=None, help="shortest span in words (ngram 3, sentence 2)")
    p.add_argument("--max-words", type=int, default=None, help="longest span in words (ngram 8, sentence 40)")
    p.add_argument("--spans-per-file", type=int, default=3)
    p.add_argument("--skip-invalid", action="store_true", help="skip unusable files (counted) instead of failing")

    p = sub.add_parser("negatives", help="add SpotSound negatives to a grounding manifest")
    p.add_argument("input", help="grounding manifest")
    p.add_argument("output", help="manifest to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-clip", type=int, default=1)
    p.add_argument("--skip-missing", action="store_true", help="clips without a valid negative get none")

    p = sub.add_parser("validate", help="check a manifest; report rows by task and invalid rows by reason")
    p.add_argument("manifest")
    p.add_argument("--skip-invalid", action="store_true", help="drop invalid rows (counted) instead of failing")
    p.add_argument(
        "--check-audio",
        nargs="?",
        const="header",
        choices=["header", "decode"],
        help="check audio files: header (exists, readable, length) or decode (also silence, NaN)",
    )
    p.add_argument("--out", help="with --skip-invalid: write the valid rows here")

    p = sub.add_parser("default", help="build (or reuse) the embedded default train/test dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=512)
    p.add_argument("--num-test", type=int, default=64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rl_audio.data", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_others(sub)
    return parser


def _synth(args) -> tuple[list[dict], dict]:
    config = SynthConfig(
        num_clips=args.num_clips,
        min_len=args.min_len,
        max_len=args.max_len,
        min_event=args.min_event,
        max_event=args.max_event,
        min_events=args.events_per_clip[0],
        max_events=args.events_per_clip[1],
        min_gap=args.min_gap,
        allow_repeats=args.allow_repeats,
        sample_rate=args.sample_rate,
        seed=args.seed,
        fg_jitter_db=args.fg_jitter_db,
        bg_rel_db=args.bg_rel_db,
        bg_jitter_db=args.bg_jitter_db,
        id_prefix=args.id_prefix,
        sed_rows=args.sed,
        negatives=args.negatives,
        shift_events=args.shift_events,
        foreground_dir=args.foreground_dir,
        background_dir=args.background_dir,
    )
    path = build_synthetic(args.out, config, progress=not args.quiet)
    return load_manifest(path), {}


def _sta(args) -> tuple[list[dict], dict]:
    _, rows, skipped = build_sta_manifest(
        args.whisper_dir,
        args.audio_dir,
        args.out,
        seed=args.seed,
        span=args.span,
        min_words=args.min_words,
        max_words=args.max_words,
        spans_per_file=args.spans_per_file,
        skip_invalid=args.skip_invalid,
        progress=not args.quiet,
    )
    return rows, skipped


def _negatives(args) -> tuple[list[dict], dict]:
    rows = load_manifest(args.input)
    out, counts = add_negatives_with_report(
        rows, seed=args.seed, per_clip=args.per_clip, skip_missing=args.skip_missing
    )
    write_manifest(out, args.output)
    logger.info("negatives: %s", dict(counts))
    return out, {"no_negative": counts["skipped_no_negative"]} if counts["skipped_no_negative"] else {}


def _validate(args) -> tuple[list[dict], dict]:
    rows, report = load_manifest_with_report(
        args.manifest, skip_invalid=args.skip_invalid, check_audio=args.check_audio or False, progress=not args.quiet
    )
    if args.out:
        write_manifest(rows, args.out)
    return rows, report.skipped


def _default(args) -> tuple[list[dict], dict]:
    paths = build_default_dataset(
        args.out, seed=args.seed, num_train=args.num_train, num_test=args.num_test, progress=not args.quiet
    )
    for split, path in paths.items():
        logger.info("%s: %s", split, path)
    return [row for path in paths.values() for row in load_manifest(path)], {}


COMMANDS = {"synth": _synth, "sta": _sta, "negatives": _negatives, "validate": _validate, "default": _default}


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand, then print its summary; returns the exit status (1 on invalid input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rows, skipped = COMMANDS[args.command](args)
    except (ManifestError, NegativeError, TranscriptError, ValueError, FileNotFoundError) as err:
        logger.error("%s", err)
        return 1
    summary = summarize(rows, skipped)
    print(format_summary(summary))
    logger.debug("%s", json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
