"""Every option of `python -m rl_audio.data` and `python -m rl_audio.converters` says what it does and takes the
training CLIs' underscore spelling (`--num_clips`), with the old hyphen spelling (`--num-clips`) kept as an alias."""

from __future__ import annotations

import argparse

import pytest
import soundfile as sf

from rl_audio.converters.__main__ import build_parser as converters_parser
from rl_audio.data.__main__ import build_parser as data_parser
from rl_audio.data.__main__ import main
from rl_audio.data.manifest import load_manifest
from rl_audio.data.options import add_option, option_strings


def _parsers(parser: argparse.ArgumentParser, prog: str = ""):
    """(name, parser) for a parser and every subcommand's parser below it."""
    yield prog or parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{prog or parser.prog} {name}")


def _actions():
    for build in (data_parser, converters_parser):
        for prog, parser in _parsers(build()):
            for action in parser._actions:
                if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                    continue
                yield prog, action


ACTIONS = list(_actions())
IDS = [
    f"{prog.split()[-1]}:{action.option_strings[0] if action.option_strings else action.dest}"
    for prog, action in ACTIONS
]


def test_every_subcommand_is_introspected():
    progs = {prog for prog, _ in ACTIONS}
    for command in ("synth", "sta", "negatives", "validate", "default"):
        assert f"python -m rl_audio.data {command}" in progs
    for fmt in ("audiogrounding", "desed", "meld", "mc-jsonl", "negatives"):
        assert f"python -m rl_audio.converters {fmt}" in progs
    assert len(ACTIONS) > 80


@pytest.mark.parametrize(("prog", "action"), ACTIONS, ids=IDS)
def test_every_option_has_help(prog, action):
    assert action.help and action.help.strip(), f"{prog}: {action.option_strings or action.dest} has no help text"


@pytest.mark.parametrize(("prog", "action"), [a for a in ACTIONS if a[1].option_strings], ids=lambda a: "")
def test_every_option_takes_underscores_and_keeps_the_hyphen_alias(prog, action):
    long = [s for s in action.option_strings if s.startswith("--")]
    assert long, f"{prog}: {action.option_strings} has no long option"
    name = long[0][2:]
    assert action.option_strings == option_strings(name), (
        f"{prog}: {action.option_strings} should be {option_strings(name)} (underscores first, hyphen alias)"
    )
    assert action.dest == name.replace("-", "_")


def test_option_strings_and_help_required():
    assert option_strings("num-clips") == ["--num_clips", "--num-clips"]
    assert option_strings("num_clips") == ["--num_clips", "--num-clips"]
    assert option_strings("seed") == ["--seed"]
    with pytest.raises(ValueError, match="help text"):
        add_option(argparse.ArgumentParser(), "num_clips", type=int)


def test_both_spellings_parse_to_the_same_arguments():
    under = data_parser().parse_args(["synth", "--out", "o", "--num_clips", "3", "--events_per_clip", "1-2"])
    hyphen = data_parser().parse_args(["synth", "--out", "o", "--num-clips", "3", "--events-per-clip", "1-2"])
    assert vars(under) == vars(hyphen)
    assert under.num_clips == 3 and under.events_per_clip == (1, 2)
    conv = converters_parser().parse_args(["meld", "x.csv", "--out", "o", "--audio_dir", "a", "--num_choices", "7"])
    assert conv.audio_dir == "a" and conv.num_choices == 7


def test_synth_runs_with_underscore_options(tmp_path, capsys):
    out = tmp_path / "synth"
    argv = [
        "--quiet", "synth", "--out", str(out), "--num_clips", "2", "--seed", "3", "--min_len", "3", "--max_len", "4",
        "--min_event", "0.5", "--max_event", "1", "--sample_rate", "8000", "--id_prefix", "u", "--negatives",
    ]  # fmt: skip
    assert main(argv) == 0
    rows = load_manifest(out / "manifest.jsonl", check_audio=True)
    assert len(rows) == 6 and all(r["id"].startswith("u-") for r in rows)  # grounding + existence yes/no per clip
    assert {sf.info(r["audio"]).samplerate for r in rows} == {8000}
    assert "rows: 6  clips: 2" in capsys.readouterr().out
