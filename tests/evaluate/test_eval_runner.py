"""run_evaluation end to end: resume after interruption, settings checks, checkpoint info, behaviour scores, the
report and figures on a tiny preset, and bad input."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import soundfile as sf
from eval_helpers import ScriptedGenerator, config_factory

from rewards.audiology import AudiologyVerify
from rl_audio.cli import RecipeError, parse_recipe
from rl_audio.data import build_default_dataset, render_target, write_manifest
from rl_audio.evaluate import AudioEvalConfig, run_evaluation
from rl_audio.evaluate.generation import PREDICTIONS_FILE


@pytest.fixture
def cfg(tmp_path):
    return config_factory(tmp_path)


@pytest.fixture(scope="module")
def default_test_manifest(tmp_path_factory):
    """The embedded default dataset, tiny: 4 test clips -> 12 rows (per clip: grounding and existence of the event,
    existence of an absent query)."""
    paths = build_default_dataset(tmp_path_factory.mktemp("data"), num_train=2, num_test=4, progress=False)
    return str(paths["test"])


def _answer(row):
    """Right for some rows, wrong or unparseable for others, always the same for a row."""
    kind = zlib.crc32((row["id"] + "x").encode()) % 3
    if kind == 0:
        return render_target(row)
    if kind == 1:
        return "From 0.5 seconds to 1.5 seconds." if row["task"] == "grounding" else "Yes."
    return "I cannot tell."


def _lines(path):
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_resume_generates_only_missing_rows_and_gives_identical_metrics(cfg, default_test_manifest, tmp_path):
    config = cfg(eval_manifests=[default_test_manifest], batch_size=3, num_plot_examples=0)
    first = ScriptedGenerator(_answer)
    metrics = run_evaluation(config, generator=first)
    n = metrics["rows"]
    assert n == 12 and sorted(first.rows) == sorted(set(first.rows)) and len(first.rows) == n
    assert 0 < metrics["grounding"]["mIoU"] < 1 and sum(metrics["unparseable"].values()) > 0  # a non-trivial case
    # the answers above, per clip: grounding right, right, unparseable, right; presence of the event undecided, yes,
    # yes, yes; presence of the absent query undecided, undecided, no, yes
    assert metrics["grounding"]["mIoU"] == 0.75
    cascaded = metrics["cascaded"]  # from the same answers: every positive has both rows, negatives existence only
    assert (cascaded["n_positive"], cascaded["n_negative"], cascaded["unpaired_existence"]) == (4, 4, 0)
    assert cascaded["mIoU"] == 0.5  # clip 0 is not grounded after an undecided presence answer
    assert (cascaded["false_alarm_rate"], cascaded["accuracy_negative"], cascaded["n_undecided"]) == (0.25, 0.25, 3)
    # TP clips 1 and 3; FP clip 2 (no window read) and three negatives; FN clip 0
    assert cascaded["f1"] == metrics["two_stage"]["f1"] == 2 * 2 / (2 * 2 + 4 + 1)

    # a crash after 6 answers, the 7th half written
    predictions = tmp_path / "eval" / PREDICTIONS_FILE
    lines = _lines(predictions)
    predictions.write_text("\n".join(lines[:6]) + "\n" + lines[6][: len(lines[6]) // 2])
    second = ScriptedGenerator(_answer)
    resumed = run_evaluation(
        cfg(eval_manifests=[default_test_manifest], batch_size=3, num_plot_examples=0), generator=second
    )
    done_before = {json.loads(line)["id"] for line in lines[:6]}
    assert len(second.rows) == n - 6 and not done_before & set(second.rows)
    assert resumed == metrics
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text()) == metrics
    assert len(_lines(predictions)) == n

    # a complete last line without its newline is kept, and the next answer starts on a new line
    predictions.write_text("\n".join(lines[:10]))
    fourth = ScriptedGenerator(_answer)
    assert (
        run_evaluation(cfg(eval_manifests=[default_test_manifest], num_plot_examples=0), generator=fourth) == metrics
    )
    assert len(fourth.rows) == n - 10 and len(_lines(predictions)) == n

    # nothing missing: no generation at all
    third = ScriptedGenerator(_answer)
    assert run_evaluation(cfg(eval_manifests=[default_test_manifest], num_plot_examples=0), generator=third) == metrics
    assert third.calls == 0


def test_interrupted_run_keeps_finished_batches(cfg, default_test_manifest, tmp_path):
    stopping = ScriptedGenerator(_answer, fail_after_batches=2)
    with pytest.raises(KeyboardInterrupt):
        run_evaluation(
            cfg(eval_manifests=[default_test_manifest], batch_size=4, num_plot_examples=0), generator=stopping
        )
    assert len(_lines(tmp_path / "eval" / PREDICTIONS_FILE)) == 8
    rest = ScriptedGenerator(_answer)
    metrics = run_evaluation(
        cfg(eval_manifests=[default_test_manifest], batch_size=4, num_plot_examples=0), generator=rest
    )
    assert len(rest.rows) == 12 - 8 and set(rest.rows).isdisjoint(stopping.rows)
    fresh = run_evaluation(
        cfg(eval_manifests=[default_test_manifest], output_dir=str(tmp_path / "fresh"), num_plot_examples=0),
        generator=ScriptedGenerator(_answer),
    )
    assert metrics == fresh


def test_changed_generation_settings_are_refused_unless_overwrite(cfg, default_test_manifest):
    run_evaluation(
        cfg(eval_manifests=[default_test_manifest], num_plot_examples=0), generator=ScriptedGenerator(_answer)
    )
    with pytest.raises(ValueError, match=r"other settings \(changed: max_new_tokens\)"):
        run_evaluation(
            cfg(eval_manifests=[default_test_manifest], max_new_tokens=7), generator=ScriptedGenerator(_answer)
        )
    again = ScriptedGenerator(lambda row: "nothing")
    metrics = run_evaluation(
        cfg(eval_manifests=[default_test_manifest], max_new_tokens=7, overwrite=True, num_plot_examples=0),
        generator=again,
    )
    assert len(again.rows) == 12 and metrics["unparseable"]["grounding"] == 4


def test_timestamp_mode_comes_from_the_checkpoint(cfg, default_test_manifest, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    spec = {
        "mode": "text",
        "granularity": 0.5,
        "text_template": "<{t}s>",
        "token_stride": 0.04,
        "token_max": 30.0,
        "token_init": "semantic",
    }
    (ckpt / "rl_audio.json").write_text(json.dumps({"timestamps": spec, "answer_style": "timepro"}))
    config = cfg(model_name_or_path=str(ckpt), eval_manifests=[default_test_manifest], num_plot_examples=0)
    run_evaluation(config, generator=ScriptedGenerator(_answer))
    assert (config.timestamp_mode, config.timestamp_granularity, config.timestamp_text_template) == (
        "text",
        0.5,
        "<{t}s>",
    )
    assert config.answer_style == "timepro"
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "timestamps: `text`, answer style: `timepro`" in report
    wrong = cfg(model_name_or_path=str(ckpt), eval_manifests=[default_test_manifest], timestamp_mode="tokens")
    with pytest.raises(ValueError, match="trained with timestamp_mode='text'"):
        run_evaluation(wrong, generator=ScriptedGenerator(_answer))


def _qa_manifest(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "speech.wav", 0.1 * rng.standard_normal(32000), 16000)
    rows = [
        {
            "id": f"q{k}",
            "audio": "speech.wav",
            "duration": 2.0,
            "task": "qa",
            "query": "What is said?",
            "choices": ["hello there", "goodbye"],
            "answer": "hello there",
            "meta": {"domain": "speech"},
        }
        for k in range(3)
    ]
    return str(write_manifest(rows, tmp_path / "qa.jsonl"))


def test_behaviour_scores_with_injected_asr_and_dotted_path_judge(cfg, tmp_path, monkeypatch):
    manifest = _qa_manifest(tmp_path)
    judge_dir = tmp_path / "judges"
    judge_dir.mkdir()
    (judge_dir / "my_judge.py").write_text(
        "CALLS = []\n"
        "def judge(question, prediction, row):\n"
        "    CALLS.append(row['id'])\n"
        "    return 1.0 if prediction.strip().endswith('hello there') else 0.0\n"
    )
    monkeypatch.syspath_prepend(str(judge_dir))
    answers = {
        "q0": "[0.0s - 1.0s]: The speaker says 'hello there'.\n(a) hello there",
        "q1": "[0.0s - 1.0s]: The speaker says 'good night'. [1.0s - 2.0s]: silence.\n(b) goodbye",
        "q2": "(a) hello there",
    }
    asr_calls = []

    def fake_asr(crops, rate):
        asr_calls.append(len(crops))
        return ["hello there"] * len(crops)

    config = cfg(eval_manifests=[manifest], judge="my_judge.judge", num_plot_examples=0)
    metrics = run_evaluation(
        config,
        generator=ScriptedGenerator(lambda r: answers[r["id"]]),
        audiology=AudiologyVerify(transcriber=fake_asr),
    )
    b = metrics["behaviour"]
    assert b["regions_explored"] == pytest.approx((1 + 2 + 0) / 3)
    assert b["audiology_verify"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)  # q1: "good night" vs "hello there"
    assert b["consistency"] == pytest.approx(2 / 3)
    assert metrics["qa"]["accuracy"] == pytest.approx(2 / 3)
    # cached: a rerun neither transcribes nor judges again
    import my_judge

    calls, asr_before = len(my_judge.CALLS), sum(asr_calls)
    again = run_evaluation(
        cfg(eval_manifests=[manifest], judge="my_judge.judge", num_plot_examples=0),
        generator=ScriptedGenerator(lambda r: answers[r["id"]]),
        audiology=AudiologyVerify(transcriber=fake_asr),
    )
    assert again == metrics and len(my_judge.CALLS) == calls and sum(asr_calls) == asr_before

    # another ASR model in the same output_dir: its own scores, not the cached ones of the first
    def other_asr(crops, rate):
        asr_calls.append(len(crops))
        return ["good night"] * len(crops)

    other = run_evaluation(
        cfg(eval_manifests=[manifest], judge="my_judge.judge", num_plot_examples=0),
        generator=ScriptedGenerator(lambda r: answers[r["id"]]),
        audiology=AudiologyVerify(transcriber=other_asr),
    )
    assert sum(asr_calls) > asr_before and len(my_judge.CALLS) == calls  # the judge's scores are still cached
    assert other["behaviour"]["audiology_verify"] == pytest.approx((0.0 + 0.5 + 0.0) / 3)


def _check_png(path):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert len(data) > 5000, (path, len(data))
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert float(image[..., :3].std()) > 0.01  # not a blank canvas


@pytest.mark.slow
def test_report_and_plots_for_a_tiny_preset(default_test_manifest, tmp_path):
    """The real path: tiny Qwen2-Audio, batched greedy generation, metrics, report and valid PNG figures."""
    config = parse_recipe(
        AudioEvalConfig,
        [
            "--model_name_or_path",
            "tiny-qwen2-audio",
            "--eval_manifests",
            default_test_manifest,
            "--output_dir",
            str(tmp_path / "eval"),
            "--batch_size",
            "5",
            "--max_new_tokens",
            "6",
            "--num_plot_examples",
            "3",
            "--timestamp_mode",
            "text",
        ],
    )
    metrics = run_evaluation(config)
    out = tmp_path / "eval"
    assert metrics["rows"] == 12 and set(metrics["tasks"]) == {"grounding", "existence"}
    records = [json.loads(line) for line in _lines(out / PREDICTIONS_FILE)]
    assert len(records) == 12 and all(set(r) == {"id", "task", "manifest", "prediction", "parsed"} for r in records)
    assert json.loads((out / "metrics.json").read_text()) == metrics
    report = (out / "report.md").read_text()
    for needle in (
        "# Evaluation report",
        "## Unparseable answers",
        "| grounding | 4 |",
        "### Grounding",
        "| R1@0.5 |",
        "### Two-stage joint F1",
        "### Cascaded inference",
        "| false_alarm_rate |",
        "## Configuration",
        "model_name_or_path: tiny-qwen2-audio",
    ):
        assert needle in report, needle
    figures = sorted((out / "plots").rglob("*.png"))
    assert len(figures) == 4 and (out / "plots" / "iou_histogram_grounding.png") in figures
    for figure in figures:
        _check_png(figure)
        assert f"]({figure.relative_to(out).as_posix()})" in report


def test_recipe_keys_are_strict(tmp_path):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("model_name_or_path: tiny-af3\niou_thresholds: [0.5, 0.7]\nsed_percentage_of_length: 0.2\n")
    config = parse_recipe(AudioEvalConfig, [str(recipe), "--batch_size", "2"])
    assert config.iou_thresholds == [0.5, 0.7] and config.sed_percentage_of_length == 0.2 and config.batch_size == 2
    recipe.write_text("iou_threshold: [0.5]\n")
    with pytest.raises(RecipeError, match="Did you mean 'iou_thresholds'"):
        parse_recipe(AudioEvalConfig, [str(recipe)])
    with pytest.raises(RecipeError, match="iou_thresholds must be numbers in"):
        parse_recipe(AudioEvalConfig, ["--iou_thresholds", "[1.5]"])


def test_bad_inputs_are_named(cfg, default_test_manifest, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"eval_manifests: .*missing.jsonl not found.*python -m rl_audio.data"):
        run_evaluation(cfg(eval_manifests=[str(tmp_path / "missing.jsonl")]), generator=ScriptedGenerator(_answer))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {"id": "x", "audio": "a.wav", "duration": 5.0, "task": "grounding", "query": "q", "windows": [[4.0, 2.0]]}
        )
        + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'windows': window \[4.0, 2.0\] has end < start"):
        run_evaluation(cfg(eval_manifests=[str(bad)]), generator=ScriptedGenerator(_answer))
    with pytest.raises(ValueError, match="tasks: unknown \\['grounding_x'\\]"):
        run_evaluation(
            cfg(eval_manifests=[default_test_manifest], tasks=["grounding_x"]), generator=ScriptedGenerator(_answer)
        )
    with pytest.raises(ValueError, match="no rows to evaluate"):
        run_evaluation(cfg(eval_manifests=[default_test_manifest], tasks=["qa"]), generator=ScriptedGenerator(_answer))
    with pytest.raises(ValueError, match=r"appears in both"):
        run_evaluation(
            cfg(eval_manifests=[default_test_manifest, default_test_manifest]), generator=ScriptedGenerator(_answer)
        )
    ghost = tmp_path / "ghost.jsonl"
    ghost.write_text(
        json.dumps(
            {"id": "g", "audio": "ghost.wav", "duration": 5.0, "task": "existence", "query": "q", "exists": False}
        )
        + "\n"
    )
    with pytest.raises(FileNotFoundError, match=r"ghost.jsonl: row 'g': audio file .*ghost.wav not found"):
        run_evaluation(cfg(eval_manifests=[str(ghost)]), generator=ScriptedGenerator(_answer))
    with pytest.raises(ValueError, match="no rows to evaluate"):  # skipped, then nothing is left
        run_evaluation(cfg(eval_manifests=[str(ghost)], skip_invalid=True), generator=ScriptedGenerator(_answer))
    predictions = tmp_path / "eval" / PREDICTIONS_FILE
    predictions.parent.mkdir(parents=True, exist_ok=True)
    predictions.write_text('{"id": "a", "task": "grounding", "prediction": "x"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl:2: unreadable prediction line"):
        run_evaluation(cfg(eval_manifests=[default_test_manifest]), generator=ScriptedGenerator(_answer))


def test_behaviour_cache_tells_asr_checkpoints_of_one_transcriber_class_apart(tmp_path):
    from rewards.audiology import AudiologyVerify
    from rl_audio.evaluate.behaviour import ScoreCache, audiology_scores

    class Whisperish:  # one transcriber class, two checkpoints: what a model path or a hub id gives
        def __init__(self, model_name, words):
            self.model_name, self.words, self.calls = model_name, words, 0

        def __call__(self, crops, rate):
            self.calls += len(crops)
            return [self.words] * len(crops)

    audio = tmp_path / "a.wav"
    import numpy as np
    import soundfile as sf

    sf.write(audio, np.zeros(32000, dtype=np.float32), 16000)
    rows = [{"id": "q0", "audio": str(audio)}]
    texts = {"q0": "[0.0s - 1.0s]: The speaker says 'hello there'.\n(a) hello there"}
    cache = ScoreCache(tmp_path / "behaviour.jsonl")
    small, large = Whisperish("tiny.en", "hello there"), Whisperish("large-v3", "good night")
    assert audiology_scores(rows, texts, AudiologyVerify(transcriber=small, tasks=("qa",)), cache) == {"q0": 1.0}
    assert audiology_scores(rows, texts, AudiologyVerify(transcriber=large, tasks=("qa",)), cache) == {"q0": 0.0}
    reread = ScoreCache(tmp_path / "behaviour.jsonl")  # from the file: both kept apart, neither recomputed
    again = Whisperish("tiny.en", "good night")
    assert audiology_scores(rows, texts, AudiologyVerify(transcriber=again, tasks=("qa",)), reread) == {"q0": 1.0}
    assert again.calls == 0 and small.calls == large.calls == 1
