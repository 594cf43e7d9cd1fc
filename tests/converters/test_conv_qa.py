"""MELD and the generic multiple-choice JSONL converter on hand-made files, and the provenance every converter
records (converter, dataset, split, evaluation benchmark)."""

from __future__ import annotations

import csv
import json

import pytest

from rl_audio.converters import SOURCES, ConverterError, convert
from rl_audio.converters.__main__ import main
from rl_audio.converters.qa import MELD_COLUMNS, MELD_EMOTIONS
from rl_audio.data import load_manifest
from rl_audio.data.templates import render_question, render_target

# rows as in github.com/declare-lab/MELD data/MELD/test_sent_emo.csv (quoted times with a comma, quoted utterances)
MELD_ROWS = [
    ["1", "Why do all you're coffee mugs have numbers on the bottom?", "Mark", "surprise", "positive", "0", "0", "3",
     "19", "00:14:38,127", "00:14:40,378"],
    ["2", "Oh. That's so Monica can keep track. That way if one on them is missing, she can be like, 'Where's "
     "number 27?!'", "Rachel", "anger", "negative", "0", "1", "3", "19", "00:14:40,629", "00:14:47,385"],
    ["3", "Y'know what?", "Rachel", "Neutral", "neutral", "1", "0", "3", "19", "00:14:56,353", "00:14:57,520"],
]  # fmt: skip


def _meld_csv(path, rows=MELD_ROWS):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MELD_COLUMNS)
        writer.writerows(rows)
    return path


def test_meld_emotion_questions_in_mmau_row_layout(tmp_path, wav):
    source = _meld_csv(tmp_path / "MELD.Raw" / "train_sent_emo.csv")
    wav("../MELD.Raw/train_splits/dia0_utt0.wav", 1.5)  # MELD.Raw's clip folder under the audio directory
    wav("../MELD.Raw/train_splits/dia0_utt1.wav", 2.0)
    wav("../MELD.Raw/dia1_utt0.flac", 1.0)  # or directly in it, any audio extension
    rows, skipped = convert("meld", str(source))
    by_id = {r["id"]: r for r in rows}
    assert not skipped and set(by_id) == {
        "meld-train-dia0_utt0-emotion",
        "meld-train-dia0_utt1-emotion",
        "meld-train-dia1_utt0-emotion",
    }
    first = by_id["meld-train-dia0_utt0-emotion"]
    assert (first["task"], first["answer"], first["duration"]) == ("qa", "surprise", 1.5)
    assert len(first["choices"]) == 4 and first["answer"] in first["choices"]
    assert set(first["choices"]) <= set(MELD_EMOTIONS) and len(set(first["choices"])) == 4
    assert by_id["meld-train-dia1_utt0-emotion"]["answer"] == "neutral"  # labels read case-insensitively
    meta = by_id["meld-train-dia0_utt1-emotion"]["meta"]
    assert (meta["speaker"], meta["dialogue_id"], meta["utterance_id"], meta["category"]) == (
        "Rachel",
        0,
        1,
        "emotion",
    )
    assert meta["utterance"].startswith("Oh. That's so Monica") and meta["domain"] == "speech"
    assert meta["provenance"] == {"converter": "meld", "dataset": "MELD", "split": "train", "eval_benchmark": None}
    # the prompt and target are those of any qa row
    assert render_question(first, "spotsound").startswith("Which emotion does the speaker express")
    assert render_target(first, "spotsound").endswith(f") {first['answer']}")
    again, _ = convert("meld", str(source))
    assert [r["choices"] for r in again] == [r["choices"] for r in rows]  # same seed, same choices
    base = [r["choices"] for r in rows]
    assert any([r["choices"] for r in convert("meld", str(source), choice_seed=s)[0]] != base for s in (1, 2, 3))


def test_meld_sentiment_all_choices_and_test_split_is_an_eval_split(tmp_path, wav):
    source = _meld_csv(tmp_path / "test_sent_emo.csv", MELD_ROWS[:1])
    wav("output_repeated_splits_test/dia0_utt0.wav", 1.0)
    rows, _ = convert(
        "meld", str(source), audio_dir=str(tmp_path / "audio"), questions=("emotion", "sentiment"), num_choices=7
    )
    emotion, sentiment = rows
    assert sorted(emotion["choices"]) == sorted(MELD_EMOTIONS)
    assert sorted(sentiment["choices"]) == ["negative", "neutral", "positive"] and sentiment["answer"] == "positive"
    assert sentiment["id"] == "meld-test-dia0_utt0-sentiment" and sentiment["meta"]["category"] == "sentiment"
    assert emotion["meta"]["provenance"] == {
        "converter": "meld",
        "dataset": "MELD",
        "split": "test",
        "eval_benchmark": "MELD",
    }


def test_meld_errors_name_the_line_and_the_mp4_to_convert(tmp_path, wav):
    audio = tmp_path / "audio"
    wav("dia0_utt0.wav")
    (audio / "dia0_utt1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    source = _meld_csv(tmp_path / "dev_sent_emo.csv", MELD_ROWS[:2])
    with pytest.raises(ConverterError, match=r"dev_sent_emo\.csv: line 3 \(id 'dia0_utt1'\): field 'audio': .*ffmpeg"):
        convert("meld", str(source), audio_dir=str(audio))
    rows, skipped = convert("meld", str(source), audio_dir=str(audio), skip_invalid=True)
    assert [r["id"] for r in rows] == ["meld-dev-dia0_utt0-emotion"] and skipped == {"audio_not_extracted": 1}
    bad = _meld_csv(tmp_path / "bad" / "train_sent_emo.csv", [MELD_ROWS[0][:3] + ["bored"] + MELD_ROWS[0][4:]])
    with pytest.raises(ConverterError, match=r"line 2 .*field 'Emotion': 'bored' is not a MELD label"):
        convert("meld", str(bad), audio_dir=str(audio))
    (tmp_path / "cols.csv").write_text("Utterance,Emotion\nhi,joy\n")
    with pytest.raises(ConverterError, match=r"cols\.csv: expected a comma-separated file .*missing \['Sr No\.'"):
        convert("meld", str(tmp_path / "cols.csv"), audio_dir=str(audio))
    with pytest.raises(ValueError, match="num_choices"):
        convert("meld", str(source), audio_dir=str(audio), num_choices=8)


def test_mc_jsonl_text_and_index_answers(tmp_path, wav, write):
    wav("a.wav", 2.0)
    wav("clips/b.wav", 1.0)
    lines = [
        {"id": "q1", "audio": "a.wav", "question": "How many speakers?", "choices": ["one", "two"], "answer": "Two"},
        {"audio": "clips/b.wav", "question": "Who laughs?", "choices": ["A", "B", "C"], "answer": 2, "meta": {"k": 1}},
    ]
    source = write("dialogue_qa_train.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    rows, _ = convert("mc-jsonl", str(source), audio_dir=str(tmp_path / "audio"), split="train")
    first, second = rows
    assert (first["id"], first["answer"], first["duration"]) == ("q1", "two", 2.0)
    assert (second["id"], second["answer"], second["meta"]["k"]) == ("dialogue_qa_train-2", "C", 1)
    assert second["meta"]["provenance"] == {
        "converter": "mc-jsonl",
        "dataset": "dialogue_qa_train",
        "split": "train",
        "eval_benchmark": None,
    }
    marked, _ = convert(
        "mc-jsonl", str(source), audio_dir=str(tmp_path / "audio"), dataset="MMAR", eval_benchmark="MMAR"
    )
    assert marked[0]["meta"]["provenance"] == {
        "converter": "mc-jsonl",
        "dataset": "MMAR",
        "split": "test",
        "eval_benchmark": "MMAR",
    }


@pytest.mark.parametrize(
    "line, message",
    [
        ({"audio": "a.wav", "question": "q?", "choices": ["x", "y"]}, "field 'answer': missing required field"),
        ({"audio": "a.wav", "question": "q?", "choices": ["x", "y"], "answer": 2}, "field 'answer': index 2 is out"),
        ({"audio": "a.wav", "question": "q?", "choices": ["x", "y"], "answer": "z"}, "field 'answer': 'z' is not"),
        ({"audio": "a.wav", "question": "q?", "choices": "x", "answer": "x"}, "field 'choices': expected a list"),
        ({"audio": "a.wav", "question": "q?", "choice": ["x"], "answer": "x"}, "field 'choice': unknown field"),
        ({"audio": "gone.wav", "question": "q?", "choices": ["x", "y"], "answer": "x"}, "field 'audio': audio file"),
        ({"audio": "a.wav", "question": "q?", "choices": ["x", "y"], "answer": True}, "field 'answer': expected"),
        ('{"audio": "a.wav", "question": ', "malformed JSON"),
    ],
)
def test_mc_jsonl_bad_line_names_file_line_and_field(tmp_path, wav, write, line, message):
    wav("a.wav")
    good = {"audio": "a.wav", "question": "q?", "choices": ["x", "y"], "answer": 0}
    text = json.dumps(good) + "\n" + (line if isinstance(line, str) else json.dumps(line)) + "\n"
    source = write("mc.jsonl", text)
    with pytest.raises(ConverterError, match=rf"mc\.jsonl: line 2[^:]*: {message}"):
        convert("mc-jsonl", str(source), audio_dir=str(tmp_path / "audio"))


@pytest.mark.parametrize(
    "name, file_name, split, benchmark",
    [
        ("mmau", "mmau-test-mini.json", "test-mini", "MMAU"),
        ("mmau", "mmau-test.json", "test", "MMAU"),
        ("mmau", "questions.json", "test-mini", "MMAU"),  # every MMAU split is an evaluation split
        ("clotho-moment", "clotho-moment_train_release.jsonl", "train", None),
        ("clotho-moment", "clotho-moment_test_release.jsonl", "test", "Clotho-Moment"),
        ("clotho-moment", "cm.jsonl", None, None),  # the name does not tell: unknown, with a warning
        ("desed", "public.tsv", "public-eval", "DESED"),
        ("desed", "validation.tsv", "validation", "DESED"),
        ("desed", "soundscapes.tsv", "train", None),  # metadata/train/synthetic21_train/soundscapes.tsv
        ("meld", "dev_sent_emo.csv", "dev", None),
    ],
)
def test_split_from_the_file_name(name, file_name, split, benchmark, tmp_path):
    path = tmp_path / ("synthetic21_train" if file_name == "soundscapes.tsv" else "x") / file_name
    info = SOURCES[name]
    told = info.infer(path) or info.default_split
    assert told == split and info.provenance(name, told)["eval_benchmark"] == benchmark


def test_provenance_per_item_split_and_option(tmp_path, wav, write, caplog):
    wav("v1.wav", 5.0)
    wav("v2.wav", 3.0)
    database = {
        "database": {
            "v1": {"duration": 5.0, "subset": "test", "annotations": [{"segment": [0, 1], "label": "dog barking"}]},
            "v2": {"duration": 3.0, "subset": "train", "annotations": [{"segment": [0, 1], "label": "car horn"}]},
        }
    }
    rows, _ = convert("unav100", str(write("unav.json", database)), audio_dir=str(tmp_path / "audio"))
    assert {r["id"]: r["meta"]["provenance"]["eval_benchmark"] for r in rows} == {
        "unav100-v1-dog_barking": "UnAV-100",
        "unav100-v2-car_horn": None,
    }
    line = {"qid": 1, "query": "a dog", "duration": 5.0, "vid": "v1", "relevant_windows": [[1, 2]]}
    source = write("cm.jsonl", json.dumps(line) + "\n")
    with caplog.at_level("WARNING"):
        (row,), _ = convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"))
    assert row["meta"]["provenance"]["split"] is None and "pass --split" in caplog.text
    (row,), _ = convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"), split="test")
    assert row["meta"]["provenance"] == {
        "converter": "clotho-moment",
        "dataset": "Clotho-Moment",
        "split": "test",
        "eval_benchmark": "Clotho-Moment",
    }
    with pytest.raises(ValueError, match="Clotho-Moment has no split 'tset'"):
        convert("clotho-moment", str(source), audio_dir=str(tmp_path / "audio"), split="tset")


def test_cli_meld_and_mc_jsonl(tmp_path, wav, write, capsys):
    wav("dia0_utt0.wav", 1.0)
    source = _meld_csv(tmp_path / "train_sent_emo.csv", MELD_ROWS[:1])
    out = tmp_path / "meld.jsonl"
    argv = ["meld", str(source), "--out", str(out), "--audio-dir", str(tmp_path / "audio"), "--questions", "sentiment"]
    assert main(argv) == 0
    (row,) = load_manifest(out)
    assert row["answer"] == "positive" and row["meta"]["provenance"]["split"] == "train"
    mc = write(
        "mc.jsonl", json.dumps({"audio": "dia0_utt0.wav", "question": "q?", "choices": ["a", "b"], "answer": 1})
    )
    out = tmp_path / "mc_out.jsonl"
    argv = ["mc-jsonl", str(mc), "--out", str(out), "--audio-dir", str(tmp_path / "audio"), "--eval-benchmark", "X"]
    assert main(argv) == 0
    assert load_manifest(out)[0]["meta"]["provenance"]["eval_benchmark"] == "X"
    with pytest.raises(SystemExit):
        main(["meld", "--help"])
    assert "--num-choices" in capsys.readouterr().out
