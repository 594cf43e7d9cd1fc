"""A hub id that is not cached: offline, an immediate error saying what to do; online, a warning before the download."""

import logging

import pytest

from rl_audio.models.loading import _check_path, load_model

MISSING = "nobody-here/not-a-cached-model"


def test_offline_uncached_hub_id_fails_at_once(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1, read when huggingface_hub loads
    with pytest.raises(FileNotFoundError) as info:
        load_model(MISSING)
    message = str(info.value)
    assert MISSING in message and "HF_HUB_OFFLINE" in message and "huggingface-cli download" in message


def test_online_uncached_hub_id_warns_before_downloading(monkeypatch, caplog):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with caplog.at_level(logging.WARNING):
        _check_path(MISSING)  # returns: transformers then downloads (not exercised here)
    assert "will download it from the hub" in caplog.text


def test_a_missing_local_path_names_the_recipe_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_name_or_path in the recipe"):
        load_model(str(tmp_path / "no-such-checkpoint"))
