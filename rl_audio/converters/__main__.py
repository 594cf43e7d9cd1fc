"""Command line of the converters: ``python -m rl_audio.converters <format> --help``."""

from __future__ import annotations

import argparse
import logging
import sys

from ..data import ManifestError, NegativeError, add_negatives_with_report, load_manifest, write_manifest
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
    p.add_argument("--out", required=True, help="manifest to write (JSONL)")
    p.add_argument("--audio-dir", help="folder of the audio files (default: the input's folder)")
    p.add_argument("--skip-invalid", action="store_true", help="skip bad items (counted by reason) instead of failing")
    p.add_argument(
        "--window-tolerance",
        type=float,
        default=0.05,
        help="seconds a window may exceed [0, duration] before it is invalid (it is clamped)",
    )
    p.add_argument("--check-audio", action="store_true", help="compare given durations with the audio headers")
    p.add_argument(
        "--negatives",
        type=int,
        default=0,
        metavar="N",
        help="add N SpotSound negative queries per clip (existence rows answered No)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the negative queries")
    splits = SOURCES[name].splits
    p.add_argument(
        "--split",
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
            p.add_argument("--version", choices=["auto", "1", "2"], default="auto", help="label format version")
        if name in ("unav100", "desed"):
            default = "grounding" if name == "unav100" else "sed"
            p.add_argument("--tasks", default=default, help="comma-separated: grounding, sed (default %(default)s)")
        if name == "unav100":
            p.add_argument("--subset", help="keep only this subset (train, validation, test)")
        if name == "desed":
            p.add_argument("--durations", help="durations TSV (filename duration)")
        if name == "ftar":
            p.add_argument("--task", help="task of every item (TAG/grounding, DAC, SED); default: each item's 'task'")
        if name == "meld":
            p.add_argument(
                "--questions", default="emotion", help="comma-separated: emotion, sentiment (default %(default)s)"
            )
            p.add_argument(
                "--num-choices", type=int, default=4, help="choices of an emotion question, 2-7 (default %(default)s)"
            )
            p.add_argument("--choice-seed", type=int, default=0, help="seed of the distractors and the choice order")
        if name == "mc-jsonl":
            p.add_argument("--dataset", help="dataset name recorded in meta.provenance (default: the file's stem)")
            p.add_argument(
                "--eval-benchmark",
                metavar="NAME",
                help="the file is an evaluation split of benchmark NAME: its rows are refused for training",
            )
    p = sub.add_parser("negatives", help="add SpotSound negative queries to a grounding manifest")
    p.add_argument("input", help="grounding manifest")
    p.add_argument("--out", required=True, help="manifest to write")
    p.add_argument("--per-clip", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-missing", action="store_true", help="clips without a valid negative query get none")
    p.add_argument(
        "--pool-from",
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
