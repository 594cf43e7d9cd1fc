"""The SFT collator: manifest rows -> right-padded ids with labels on the target tokens only (SpotSound §2.3), and
the family's audio inputs; the loss is the mean NLL of those tokens."""

from __future__ import annotations

import pytest
import torch

from rl_audio.data import load_manifest, render_target
from rl_audio.models.loading import load_model
from rl_audio.models.prompting import IGNORE_INDEX, PromptBuilder
from rl_audio.models.timestamps import TimestampSpec
from rl_audio.trainers.sft import AudioSFTCollator, token_nll


@pytest.mark.parametrize("name", ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"])
@pytest.mark.parametrize("style", ["spotsound", "timepro"])
def test_labels_cover_the_target_only(default_data, name, style):
    lm = load_model(name)
    rows = [r for r in load_manifest(default_data["train"]) if r["task"] == "grounding"][:3]
    collate = AudioSFTCollator(PromptBuilder(lm.adapter, TimestampSpec("text")), answer_style=style, max_length=None)
    batch = collate(rows)
    tok = lm.adapter.tokenizer
    frame_mask_key = lm.adapter.frame_mask_key
    assert set(batch) == {"input_ids", "attention_mask", "labels", "input_features", frame_mask_key}
    assert batch["input_features"].shape[0] == len(rows)  # one 30 s window per 5-8 s clip
    for i, row in enumerate(rows):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX].tolist()
        assert tok.decode(labelled) == render_target(row, style) + "<|im_end|>"
        # labels sit exactly on the last tokens before the padding
        n = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, n - len(labelled) : n].tolist() == labelled
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()
    with torch.no_grad():
        logits = lm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    nll, count, _ = token_nll(logits, batch["labels"])
    assert int(count) == int((batch["labels"] != IGNORE_INDEX).sum())
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    torch.testing.assert_close(nll / count, reference)


def test_too_long_for_max_length_names_the_rows(default_data):
    lm = load_model("tiny-af3")
    rows = load_manifest(default_data["train"])[:2]
    collate = AudioSFTCollator(
        PromptBuilder(lm.adapter, TimestampSpec("none")), answer_style="spotsound", max_length=64
    )
    with pytest.raises(ValueError, match=rf"rows \['{rows[0]['id']}', '{rows[1]['id']}'\]: sequence of \d+ tokens"):
        collate(rows)


@pytest.mark.parametrize("name", ["tiny-qwen2-audio", "tiny-qwen2.5-omni", "tiny-af3"])
def test_training_loss_runs_the_head_on_target_positions_only(default_data, name):
    """The training loss (LM head on the positions that predict a target token) equals the loss from every
    position's logits, with the same gradients, while the head sees only those positions."""
    from collections import defaultdict
    from types import SimpleNamespace

    from rl_audio.trainers.sft import AudioSFTTrainer

    lm = load_model(name)
    rows = [r for r in load_manifest(default_data["train"]) if r["task"] == "grounding"][:3]
    batch = AudioSFTCollator(PromptBuilder(lm.adapter, TimestampSpec("text")), answer_style="spotsound", max_length=None)(rows)
    trainer = SimpleNamespace(
        args=SimpleNamespace(average_tokens_across_devices=False),
        accelerator=SimpleNamespace(gather_for_metrics=lambda x: x),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
    )
    lm.model.train()
    seen = []
    lm.model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape[:2])))
    losses, grads = [], []
    for full in (True, False):
        lm.model.zero_grad()
        out = AudioSFTTrainer.compute_loss(trainer, lm.model, dict(batch), return_outputs=full)
        loss = out[0] if full else out
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in lm.model.named_parameters() if p.grad is not None})
    n_targets = int((batch["labels"] != IGNORE_INDEX).sum())
    assert seen == [tuple(batch["input_ids"].shape), (1, n_targets)]
    torch.testing.assert_close(losses[1], losses[0])
    assert grads[1].keys() == grads[0].keys() and len(grads[0]) > 10
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], msg=n)
    assert trainer._metrics["train"]["mean_token_accuracy"][0] == trainer._metrics["train"]["mean_token_accuracy"][1]
