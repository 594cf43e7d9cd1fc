"""Option spelling shared by the data and converter command lines.

The training entry points spell options with underscores (`--num_train_epochs`, TRL's parser); the data commands
were written with hyphens (`--num-clips`). `add_option` registers both, underscores first (shown in `--help` and
used as the destination name), so a user can spell every rl_audio option one way and older commands keep working.
"""

from __future__ import annotations

import argparse


def option_strings(name: str) -> list[str]:
    """``"num-clips"`` or ``"num_clips"`` -> ``["--num_clips", "--num-clips"]`` (one string when they agree)."""
    under, hyphen = "--" + name.replace("-", "_"), "--" + name.replace("_", "-")
    return [under] if under == hyphen else [under, hyphen]


def add_option(parser: argparse.ArgumentParser, name: str, **kwargs) -> argparse.Action:
    """``parser.add_argument`` for ``--name`` in both spellings; a help text is required (every option says what
    it does)."""
    if not kwargs.get("help"):
        raise ValueError(f"option --{name}: give it a help text")
    return parser.add_argument(*option_strings(name), **kwargs)
