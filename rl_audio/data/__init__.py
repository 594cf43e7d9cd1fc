"""Audio data pipeline: one JSONL manifest schema for every task, builders and prompt templates.

- :mod:`~rl_audio.data.manifest`: schema, validation, loading, writing, ``datasets.Dataset`` conversion.
- :mod:`~rl_audio.data.audio`: decoding with checks (missing, unreadable, empty, silent, NaN).
- :mod:`~rl_audio.data.synth`: synthetic needle-in-a-haystack grounding data (SpotSound §3.1).
- :mod:`~rl_audio.data.negatives`: SpotSound negative queries.
- :mod:`~rl_audio.data.sta`: supervised timestamp alignment from whisper-timestamped transcripts (TGSR §3.1).
- :mod:`~rl_audio.data.provenance`: where a row came from; the guard against training on evaluation splits.
- :mod:`~rl_audio.data.templates`: row -> question and target text.
- :mod:`~rl_audio.data.default`: the embedded default dataset.

Command line: ``python -m rl_audio.data --help``. Schema and commands: ``docs/data.md``.
"""

from .audio import AudioError, audio_duration, load_audio
from .default import build_default_dataset
from .manifest import (
    FIELDS,
    TASKS,
    ManifestError,
    RowError,
    SkipReport,
    load_manifest,
    load_manifest_with_report,
    manifest_to_dataset,
    validate_row,
    write_manifest,
)
from .negatives import NegativeError, add_negatives, add_negatives_with_report, content_words
from .provenance import EvalSplitError, eval_split_of, make_provenance
from .sta import build_sta_manifest, build_sta_rows
from .stats import summarize
from .synth import SynthConfig, build_synthetic
from .templates import STYLES, render_question, render_target

__all__ = [
    "FIELDS",
    "STYLES",
    "TASKS",
    "AudioError",
    "EvalSplitError",
    "ManifestError",
    "NegativeError",
    "RowError",
    "SkipReport",
    "SynthConfig",
    "add_negatives",
    "add_negatives_with_report",
    "audio_duration",
    "build_default_dataset",
    "build_sta_manifest",
    "build_sta_rows",
    "build_synthetic",
    "content_words",
    "eval_split_of",
    "load_audio",
    "load_manifest",
    "load_manifest_with_report",
    "make_provenance",
    "manifest_to_dataset",
    "render_question",
    "render_target",
    "summarize",
    "validate_row",
    "write_manifest",
]
