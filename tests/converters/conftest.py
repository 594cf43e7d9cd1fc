"""Fixtures of the converter tests: writers of tiny wav files and of release files under the test's tmp_path."""

from __future__ import annotations

import pytest
from conv_helpers import file_writer, wav_writer


@pytest.fixture
def wav(tmp_path):
    return wav_writer(tmp_path)


@pytest.fixture
def write(tmp_path):
    return file_writer(tmp_path)
