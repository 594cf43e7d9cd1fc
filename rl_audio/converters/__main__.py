"""Command line of the converters: ``python -m rl_audio.converters <format> --help``.

Options are spelled with underscores, as in the training entry points (``--audio_dir``); the hyphenated spelling
(``--audio-dir``) is accepted too."""

from __future__ import annotations

import argparse
import logging
import sys

from ..data import ManifestError, NegativeError, add_negatives_with_report, load_manifest, write_manifest
from ..data.options import add_option
from ..data.stats import format_summary, summarize
from . import CONVERTERS, SOURCES, ConverterError, convert

logger = logging.getLogger("rl_audio.converters")

_HELP = {
    "audiogrounding": "AudioGrounding v1/v2 label JSON (Xu et al. 2021)",
    "clotho-moment": "Clotho-Moment JSONL (qid, query, duration, vid, relevant_windows)",
    "unav100": "UnAV-100 annotations JSON ({database: {vid: {duration, subset, annotations}}})",
    "desed": "DESED strong-label TSV (filename onset offset event_label) [+ durations TSV]",
    "ftar": "FTAR / TimeAudio JSON (audio, question, answer, duration, id, task)",
    "mmau": "MMAU test-mini JSON (id, audio_id, question, choices, answer, task, ...)",
    "spotsound-bench": "SpotSound-Bench (UnAV-style database JSON, or list/JSONL of audio, query, windows)",
    "meld": "MELD CSV (Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, ...) -> "
    "emotion/sentiment multiple-choice QA; audio dia<D>_utt<U>.wav extracted from MELD's mp4 clips",
    "mc-jsonl": "generic multiple-choice JSONL (audio, question, choices, answer as text or 0-based index)",
}


def _common(p: argparse.ArgumentParser, name: str) -> None:
    p.add_argument("input", help="the release's annotation file")
    add_option(p, "out", required=True, help="manifest to write (JSONL)")
    add_option(p, "audio_dir", help="folder of the audio files (default: the input's folder)")
    add_option(p, "skip_invalid", action="store_true", help="skip bad items (counted by reason) instead of failing")
    add_option(
        p,
        "window_tolerance",
        type=float,
        default=0.05,
        help="seconds a window may exceed [0, duration] before it is invalid (it is clamped)",
    )
    add_option(p, "check_audio", action="store_true", help="compare given durations with the audio headers")
    add_option(
        p,
        "negatives",
        type=int,
        default=0,
        metavar="N",
        help="add N SpotSound negative queries per clip (existence rows answered No)",
    )
    add_option(p, "seed", type=int, default=0, help="seed of the negative queries")
    splits = SOURCES[name].splits
    add_option(
        p,
        "split",
        help=f"the release's split this input is ({', '.join(splits) or 'any name'}; default: told by the file "
        "name), recorded in meta.provenance; rows of an evaluation split"
        + (f" ({', '.join(SOURCES[name].eval_splits)})" if SOURCES[name].eval_splits else "")
        + " are refused for training",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rl_audio.converters", description=__doc__)
    sub = parser.add_subparsers(dest="format", required=True)
    for name in CONVERTERS:
        p = sub.add_parser(name, help=_HELP[name], description=CONVERTERS[name].__doc__)
        _common(p, name)
        if name == "audiogrounding":
            add_option(p, "version", choices=["auto", "1", "2"], default="auto", help="label format version")
        if name in ("unav100", "desed"):
            default = "grounding" if name == "unav100" else "sed"
            add_option(p, "tasks", default=default, help="comma-separated: grounding, sed (default %(default)s)")
        if name == "unav100":
            add_option(p, "subset", help="keep only this subset (train, validation, test)")
        if name == "desed":
            add_option(p, "durations", help="durations TSV (filename duration)")
        if name == "ftar":
            add_option(p, "task", help="task of every item (TAG/grounding, DAC, SED); default: each item's 'task'")
        if name == "meld":
            add_option(
                p, "questions", default="emotion", help="comma-separated: emotion, sentiment (default %(default)s)"
            )
            add_option(
                p, "num_choices", type=int, default=4, help="choices of an emotion question, 2-7 (default %(default)s)"
            )
            add_option(p, "choice_seed", type=int, default=0, help="seed of the distractors and the choice order")
        if name == "mc-jsonl":
            add_option(p, "dataset", help="dataset name recorded in meta.provenance (default: the file's stem)")
            add_option(
                p,
                "eval_benchmark",
                metavar="NAME",
                help="the file is an evaluation split of benchmark NAME: its rows are refused for training",
            )
    p = sub.add_parser("negatives", help="add SpotSound negative queries to a grounding manifest")
    p.add_argument("input", help="grounding manifest")
    add_option(p, "out", required=True, help="manifest to write")
    add_option(p, "per_clip", type=int, default=1, help="negative queries per clip (default %(default)s)")
    add_option(p, "seed", type=int, default=0, help="seed of the negative queries")
    add_option(p, "skip_missing", action="store_true", help="clips without a valid negative query get none")
    add_option(
        p,
        "pool_from",
        nargs="+",
        default=[],
        metavar="MANIFEST",
        help="also draw negative queries from these manifests' grounding/existence queries (SpotSound §3.1 draws "
        "them from one global pool over all training corpora)",
    )
    return parser


def _pool_queries(paths: list[str]) -> list[str]:
    """Queries of the grounding and existence rows of other manifests, for a global negative pool."""
    queries = []
    for path in paths:
        queries += [r["query"] for r in load_manifest(path) if r["task"] in ("grounding", "existence") and r["query"]]
    return queries


def _options(args) -> dict:
    options = {}
    for key in ("version", "subset", "durations", "task", "num_choices", "choice_seed", "dataset", "eval_benchmark"):
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    for key in ("tasks", "questions"):
        if getattr(args, key, None):
            options[key] = tuple(t.strip() for t in getattr(args, key).split(",") if t.strip())
    return options


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.format == "negatives":
            rows, counts = add_negatives_with_report(
                load_manifest(args.input),
                seed=args.seed,
                per_clip=args.per_clip,
                skip_missing=args.skip_missing,
                extra_queries=_pool_queries(args.pool_from),
            )
            skipped = {"no_negative": counts["skipped_no_negative"]} if counts["skipped_no_negative"] else {}
        else:
            rows, skipped = convert(
                args.format,
                args.input,
                audio_dir=args.audio_dir,
                skip_invalid=args.skip_invalid,
                window_tolerance=args.window_tolerance,
                check_audio=args.check_audio,
                negatives=args.negatives,
                seed=args.seed,
                split=args.split,
                **_options(args),
            )
        write_manifest(rows, args.out)
    except (ConverterError, ManifestError, NegativeError, ValueError) as err:
        logger.error("%s", err)
        return 1
    print(f"wrote {args.out}")
    print(format_summary(summarize(rows, skipped)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
