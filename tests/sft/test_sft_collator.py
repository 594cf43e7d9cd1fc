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
