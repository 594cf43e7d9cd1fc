"""Strict recipe parsing: `python -m rl_audio.<entry> RECIPE.yaml [--key value ...]`.

The recipe is flat YAML; every key must be a field of the entry point's config dataclass. An unknown or misspelled
key is an error that names the recipe file, suggests the closest valid keys and lists them all (TRL's own scripts
ignore unknown keys silently). Command-line overrides come after the recipe path and win over it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import types
import typing
from pathlib import Path

import yaml


class RecipeError(ValueError):
    pass


def _base_types(tp) -> list:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _base_types(a)]
    return [tp]


def _coerce(name: str, tp, value, source: str):
    """Convert a YAML or command-line value to the field's type (PyYAML reads `1e-5` as a string)."""
    if value is None:
        return None
    kinds = _base_types(tp)
    origins = [typing.get_origin(k) or k for k in kinds]
    try:
        if isinstance(value, str):
            if value.lower() in ("null", "~") and type(None) in kinds:
                return None
            if bool in origins:
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
            if int in origins and float not in origins:
                return int(value)
            if float in origins:
                return float(value)
            if list in origins and str not in origins:
                parsed = yaml.safe_load(value)
                return parsed if isinstance(parsed, list) else [v.strip() for v in value.split(",") if v.strip()]
            if dict in origins and str not in origins:
                return yaml.safe_load(value)
        if isinstance(value, int) and not isinstance(value, bool) and float in origins and int not in origins:
            return float(value)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"{source}: key {name!r}: cannot read {value!r} as {tp}: {e}") from None
    return value


_SIMPLE = (bool, int, float, str, list, dict, type(None))


def _check_value(name: str, tp, value, source: str):
    """Refuse a value of the wrong kind for a field typed with plain types (bool, int, float, str, list, dict,
    Optional); fields typed with enums or classes are left to the config's own checks."""
    kinds = _base_types(tp)
    origins = [typing.get_origin(k) or k for k in kinds]
    if any(o not in _SIMPLE for o in origins):
        return value

    def refuse(why: str):
        raise RecipeError(f"{source}: key {name!r}: {value!r} {why} (expected {tp})")

    if value is None:
        if type(None) not in origins:
            refuse("is null, which this key does not take")
    elif isinstance(value, bool):
        if bool not in origins:
            refuse("is a boolean")
    elif isinstance(value, int):
        if int not in origins and float not in origins:
            refuse("is a number")
    elif isinstance(value, float):
        if float not in origins:
            refuse("is not a whole number" if int in origins else "is a number")
        if not math.isfinite(value):
            refuse("is not finite")
    elif isinstance(value, list):
        if list not in origins:
            refuse("is a list")
    elif isinstance(value, dict):
        if dict not in origins:
            refuse("is a mapping")
    elif isinstance(value, str) and str not in origins:
        refuse("is text")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; in a recipe that hides which value is used."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _unknown_key_error(key: str, valid: list[str], source: str) -> RecipeError:
    close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return RecipeError(f"{source}: unknown key {key!r}.{hint}\nValid keys: {', '.join(sorted(valid))}")


def _cli_pairs(args: list[str]) -> list[tuple[str, str]]:
    pairs, i = [], 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise RecipeError(f"command line: expected --key value, got {a!r}")
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            k, v = a[2:], args[i + 1]
            i += 2
        else:
            k, v = a[2:], "true"
            i += 1
        pairs.append((k.replace("-", "_"), v))
    return pairs


def _clean_errors() -> tuple[type[BaseException], ...]:
    from .data.manifest import ManifestError

    return RecipeError, ManifestError, FileNotFoundError


def run_entry(main, argv: list[str] | None = None):
    """Run an entry point's ``main``. A recipe, manifest or missing-file error says what to change in its message,
    so it prints as one line, ``error: <message>``, and exits with status 2 (``RL_AUDIO_DEBUG=1`` re-raises it
    with the traceback). Anything else keeps its traceback."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except Exception as err:
        if not isinstance(err, _clean_errors()) or os.environ.get("RL_AUDIO_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_recipe(cls, argv: list[str] | None = None):
    """Build `cls` from `argv` = [RECIPE.yaml] + overrides. A missing recipe path means defaults + overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(help_text(cls))
        raise SystemExit(0)
    values: dict = {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    path = None
    if argv and not argv[0].startswith("--"):
        path = Path(argv.pop(0))
        if not path.is_file():
            raise RecipeError(f"recipe {path} does not exist")
        try:
            loaded = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML: {e}") from None
        if loaded is None:
            raise RecipeError(f"{path}: the recipe is empty (it would train on every default); give at least "
                              "model_name_or_path and output_dir")  # fmt: skip
        if not isinstance(loaded, dict):
            raise RecipeError(f"{path}: a recipe is a flat mapping of key: value")
        for k, v in loaded.items():
            if k not in fields:
                raise _unknown_key_error(k, list(fields), str(path))
            values[k] = _check_value(k, hints[k], _coerce(k, hints[k], v, str(path)), str(path))
    overrides = {}
    for k, v in _cli_pairs(argv):
        if k not in fields:
            raise _unknown_key_error(k, list(fields), "command line")
        values[k] = overrides[k] = _check_value(k, hints[k], _coerce(k, hints[k], v, "command line"), "command line")
    try:
        cfg = cls(**values)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"invalid recipe: {e}") from e
    # where the run's settings came from, for the model card (not fields: TRL's arguments keep their own list)
    cfg.recipe_path = str(path) if path is not None else None
    cfg.recipe_overrides = overrides
    return cfg


def help_text(cls) -> str:
    """Usage line with the entry point's module, then each documented key. Keys a config accepts only so that one
    recipe can serve several entry points (``cls.UNUSED_KEYS``: evaluation's training keys) are named apart."""
    entry = getattr(cls, "ENTRY", "rl_audio.<entry>")
    unused = set(getattr(cls, "UNUSED_KEYS", ()))
    lines = [f"usage: python -m {entry} [RECIPE.yaml] [--key value ...]   ({cls.__name__})", "",
             "Keys (a recipe's YAML keys, or --key value on the command line, which wins):"]  # fmt: skip
    for f in dataclasses.fields(cls):
        if f.init and "help" in f.metadata and f.name not in unused:
            lines.append(f"  --{f.name}: {f.metadata['help']}")
    if unused:
        lines += [
            "",
            "Accepted so that a training recipe can be reused here, and ignored: " + ", ".join(sorted(unused)),
        ]
    return "\n".join(lines)
