"""Timestamp tokens (TimePro-RL §2.1): semantic initialisation (eq. 1) of the embedding and untied lm_head rows,
the random-initialisation ablation (Table 3), and rows that stay bit-identical through training, with full
fine-tuning (AdamW with weight decay) and with LoRA, into the saved checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl_audio.cli import parse_recipe
from rl_audio.configs import AudioSFTConfig
from rl_audio.models.loading import load_model
from rl_audio.models.timestamps import RowFreezer, TimestampSpec
from rl_audio.runs import save_final
from rl_audio.sft import build_trainer

TINY = ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"]
ROOT = Path(__file__).resolve().parents[2]


def _tables(model) -> dict[str, torch.Tensor]:
    return {
        "embedding": model.get_input_embeddings().weight.detach().clone(),
        "lm_head": model.get_output_embeddings().weight.detach().clone(),
    }


@pytest.mark.parametrize("name", TINY)
def test_semantic_init_is_the_subword_mean(name):
    base = load_model(name)
    before = _tables(base.model)
    spec = TimestampSpec("tokens", token_stride=0.04, token_max=30.0)
    lm = load_model(name, timestamps=spec)
    tok = lm.adapter.tokenizer
    names = spec.token_strings()
    assert len(names) == 750 and names[0] == "<0.04>" and names[-1] == "<30.00>"
    assert lm.timestamp_ids == tok.convert_tokens_to_ids(names)
    assert all(len(tok.tokenize(n)) == 1 for n in ("<0.04>", "<12.48>", "<30.00>"))  # one token each
    after = _tables(lm.model)
    # the presets' heads are untied, as in Qwen2-Audio-7B-Instruct and the Omni thinker
    assert lm.model.get_output_embeddings().weight is not lm.model.get_input_embeddings().weight
    multi = 0
    for tid, name_ in zip(lm.timestamp_ids, names):
        parts = base.adapter.tokenizer(name_[1:-1], add_special_tokens=False)["input_ids"]
        multi += len(parts) > 1
        for key in ("embedding", "lm_head"):  # eq. 1, on each table with its own rows
            torch.testing.assert_close(after[key][tid], before[key][parts].mean(dim=0), rtol=0, atol=1e-7)
    assert multi > 700, "the tiny tokenizer should split most numbers into several subwords"
    for key in ("embedding", "lm_head"):
        n = before[key].shape[0]
        assert torch.equal(after[key][:n], before[key])  # existing rows untouched
    # idempotent: a checkpoint that already has the tokens keeps its rows
    from rl_audio.models.timestamps import add_timestamp_tokens

    assert add_timestamp_tokens(lm.model, tok, spec) == lm.timestamp_ids
    assert torch.equal(_tables(lm.model)["embedding"], after["embedding"])


def test_random_init_differs_from_semantic_and_is_reproducible():
    semantic = load_model("tiny-qwen2.5-omni", timestamps=TimestampSpec("tokens"))
    random_a = load_model("tiny-qwen2.5-omni", timestamps=TimestampSpec("tokens", token_init="random"))
    random_b = load_model("tiny-qwen2.5-omni", timestamps=TimestampSpec("tokens", token_init="random"))
    ids = semantic.timestamp_ids
    assert random_a.timestamp_ids == ids
    for key in ("embedding", "lm_head"):
        s, a, b = (_tables(m.model)[key] for m in (semantic, random_a, random_b))
        assert torch.equal(a[ids], b[ids])  # seeded: re-adding the tokens for a LoRA merge gives the same rows
        assert not torch.allclose(a[ids], s[ids], atol=1e-3)
        assert torch.equal(a[: ids[0]], s[: ids[0]])
        # same scale as the existing rows
        ratio = float(a[ids].std() / a[: ids[0]].std())
        assert 0.8 < ratio < 1.25
    with pytest.raises(ValueError, match="timestamp_token_init 'uniform'"):
        TimestampSpec("tokens", token_init="uniform")


def test_row_freezer_restores_rows_after_weight_decay():
    lm = load_model("tiny-af3", timestamps=TimestampSpec("tokens", token_max=2.0))
    emb = lm.model.get_input_embeddings().weight
    rows = lm.timestamp_ids
    saved = emb.detach()[rows].clone()
    opt = torch.optim.AdamW([emb], lr=0.1, weight_decay=0.5)
    loss = emb[rows].sum() + emb[:10].sum()
    loss.backward()
    assert torch.count_nonzero(emb.grad[rows]) == 0  # the hook zeroes their gradient
    opt.step()
    assert not torch.equal(emb.detach()[rows], saved)  # decoupled weight decay moved them anyway
    lm.freezer.restore()
    assert torch.equal(emb.detach()[rows], saved)
    assert isinstance(lm.freezer, RowFreezer)


def _train(tmp_path, default_data_args, *extra: str):
    cfg = parse_recipe(
        AudioSFTConfig,
        [
            str(ROOT / "recipes" / "cpu" / "timepro_sft.yaml"),
            "--output_dir", str(tmp_path / "out"), "--max_steps", "3", "--per_device_train_batch_size", "2",
            "--save_strategy", "no", "--logging_steps", "1", "--freeze_audio_encoder", "true",
            "--activation_checkpointing", "false", *default_data_args, *extra,
        ],
    )  # fmt: skip
    trainer, lm = build_trainer(cfg)
    initial = _tables(lm.model)
    params = {n: p.detach().clone() for n, p in lm.model.named_parameters() if p.requires_grad}
    trainer.train()
    return cfg, trainer, lm, initial, params


@pytest.mark.parametrize("variant", ["full", "lora"])
def test_timestamp_rows_stay_frozen_through_sft(tmp_path, default_data_args, variant):
    if variant == "full":
        extra = ["--use_peft", "false", "--weight_decay", "0.1", "--learning_rate", "1e-2"]
    else:
        extra = ["--use_peft", "true", "--weight_decay", "0.1", "--learning_rate", "1e-2"]
    cfg, trainer, lm, initial, params = _train(tmp_path, default_data_args, *extra)
    ids = lm.timestamp_ids
    after = _tables(lm.model)
    for key in ("embedding", "lm_head"):
        assert torch.equal(after[key][ids], initial[key][ids]), f"{key} timestamp rows moved"
    changed = [n for n, p in lm.model.named_parameters() if p.requires_grad and not torch.equal(p, params[n])]
    assert changed, "nothing trained"
    if variant == "full":
        assert lm.model.get_input_embeddings().weight.requires_grad
        for key in ("embedding", "lm_head"):  # the other rows did train (and decay)
            assert not torch.equal(after[key][: ids[0]], initial[key][: ids[0]]), key
    else:
        assert all("lora_" in n for n in params), "LoRA trains only its adapters here"

    # the saved checkpoint (merged, for LoRA) carries the same rows
    final = save_final(trainer, lm, cfg)
    reloaded = load_model(str(final), timestamps=cfg.timestamp_spec())
    assert reloaded.timestamp_ids == ids
    saved = _tables(reloaded.model)
    for key in ("embedding", "lm_head"):
        assert torch.equal(saved[key][ids], initial[key][ids]), key
    if variant == "lora":
        assert (final / "adapter" / "adapter_config.json").exists()
        # merged: LoRA's update is in the plain weights, which therefore differ from the base model's
        base = load_model(cfg.model_name_or_path).model.state_dict()
        merged = reloaded.model.state_dict()
        q = next(k for k in merged if k.endswith("q_proj.weight") and "audio" not in k)
        assert not torch.equal(merged[q], base[q])
