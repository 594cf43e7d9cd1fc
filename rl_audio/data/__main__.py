"""Command line of the data pipeline: ``python -m rl_audio.data {synth,sta,negatives,validate,default} --help``.

Options are spelled with underscores, as in the training entry points (``--num_clips``); the hyphenated spelling
(``--num-clips``) is accepted too."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .default import build_default_dataset
from .manifest import ManifestError, load_manifest, load_manifest_with_report, write_manifest
from .negatives import NegativeError, add_negatives_with_report
from .options import add_option
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
    add_option(p, "out", required=True, help="output folder (manifest.jsonl and audio/)")
    add_option(p, "num_clips", type=int, default=d.num_clips, help="clips to generate (default %(default)s)")
    add_option(p, "seed", type=int, default=d.seed, help="random seed: the same seed gives the same set")
    add_option(p, "min_len", type=float, default=d.min_len, help="shortest clip, seconds (default %(default)s)")
    add_option(p, "max_len", type=float, default=d.max_len, help="longest clip, seconds (default %(default)s)")
    add_option(p, "min_event", type=float, default=d.min_event, help="shortest event, seconds (default %(default)s)")
    add_option(p, "max_event", type=float, default=d.max_event, help="longest event, seconds (default %(default)s)")
    add_option(p, "events_per_clip", type=_range, default=(1, 1), help="events per clip: N or N-M (default 1)")
    add_option(p, "min_gap", type=float, default=d.min_gap, help="seconds between events of a clip")
    add_option(p, "allow_repeats", action="store_true", help="a class may occur several times in a clip")
    add_option(p, "sample_rate", type=int, default=d.sample_rate, help="Hz, a multiple of 100 (default %(default)s)")
    add_option(p, "fg_jitter_db", type=float, default=d.fg_jitter_db, help="foreground gain jitter, +- dB")
    add_option(p, "bg_rel_db", type=float, default=d.bg_rel_db, help="background level re foreground, dB")
    add_option(p, "bg_jitter_db", type=float, default=d.bg_jitter_db, help="jitter around --bg_rel_db, +- dB")
    add_option(p, "id_prefix", default=d.id_prefix, help="prefix of the row ids (keep it when shifting a set)")
    add_option(p, "sed", action="store_true", help="also write one sed row per clip")
    add_option(p, "negatives", action="store_true", help="add SpotSound negatives (existence rows answered No)")
    add_option(
        p,
        "shift_events",
        action="store_true",
        help="the same clips as without it, each event moved to a new position (SpotSound App. B.3)",
    )
    add_option(p, "foreground_dir", help="real foregrounds: one subfolder per class, named by its caption")
    add_option(p, "background_dir", help="real backgrounds: audio files at any depth")


def _add_sta(sub) -> None:
    p = sub.add_parser("sta", help="STA rows from whisper-timestamped JSON (TGSR §3.1)")
    add_option(p, "whisper_dir", required=True, help="whisper-timestamped .json files")
    add_option(p, "audio_dir", required=True, help="audio files, matched to transcripts by stem")
    add_option(p, "out", required=True, help="manifest to write")
    add_option(p, "seed", type=int, default=0, help="seed of the span draw: the same seed gives the same rows")
    add_option(
        p,
        "span",
        choices=("ngram", "sentence"),
        default="ngram",
        help="sentence: spoken sentences, read from the punctuation on the words (TGSR §3.1, recipes/sta.yaml); "
        "ngram: runs of consecutive words of one segment",
    )
    add_option(p, "min_words", type=int, default=None, help="shortest span in words (ngram 3, sentence 2)")
    add_option(p, "max_words", type=int, default=None, help="longest span in words (ngram 8, sentence 40)")
    add_option(p, "spans_per_file", type=int, default=3, help="most spans drawn per transcript (default %(default)s)")
    add_option(p, "skip_invalid", action="store_true", help="skip unusable files (counted) instead of failing")


def _add_others(sub) -> None:
    p = sub.add_parser("negatives", help="add SpotSound negatives to a grounding manifest")
    p.add_argument("input", help="grounding manifest")
    p.add_argument("output", help="manifest to write")
    add_option(p, "seed", type=int, default=0, help="seed of the negative queries")
    add_option(p, "per_clip", type=int, default=1, help="negative queries per clip (default %(default)s)")
    add_option(p, "skip_missing", action="store_true", help="clips without a valid negative get none")

    p = sub.add_parser("validate", help="check a manifest; report rows by task and invalid rows by reason")
    p.add_argument("manifest", help="manifest (JSONL) to check")
    add_option(p, "skip_invalid", action="store_true", help="drop invalid rows (counted) instead of failing")
    add_option(
        p,
        "check_audio",
        nargs="?",
        const="header",
        choices=["header", "decode"],
        help="check audio files: header (exists, readable, length) or decode (also silence, NaN)",
    )
    add_option(p, "out", help="with --skip_invalid: write the valid rows here")

    p = sub.add_parser("default", help="build (or reuse) the embedded default train/test dataset")
    add_option(p, "out", required=True, help="output folder (train and test manifests and their audio)")
    add_option(p, "seed", type=int, default=0, help="random seed of the generated clips")
    add_option(p, "num_train", type=int, default=512, help="training clips (default %(default)s)")
    add_option(p, "num_test", type=int, default=64, help="held-out clips (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rl_audio.data", description=__doc__)
    add_option(parser, "quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_synth(sub)
    _add_sta(sub)
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
