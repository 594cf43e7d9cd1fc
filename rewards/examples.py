"""One example reference row per task: the dataset columns each task's rewards read, with valid values.

For trying a reward by hand, and shared by the property tests and ``benchmarks/reward_time.py``.

>>> import rewards
>>> from rewards.examples import EXAMPLE_COLUMNS
>>> row = EXAMPLE_COLUMNS["grounding"]
>>> rewards.get("miou")(["From 1 seconds to 3 seconds."], task=["grounding"], **{k: [v] for k, v in row.items()})
[0.6666666666666666]
"""

EXAMPLE_COLUMNS = {
    "grounding": {"windows": [[1.0, 3.0], [5.0, 6.0]], "query": "a dog barks", "duration": 10.0},
    "existence": {"exists": True, "query": "a dog barks"},
    "sed": {"events": [{"onset": 1.2, "offset": 3.4, "label": "dog"}, {"onset": 0, "offset": 1, "label": "cat"}]},
    "dac": {"events": [{"onset": 1.2, "offset": 3.4, "label": "a dog barks loudly"}], "duration": 10.0},
    "sta": {"windows": [[1.2, 3.4]], "query": "hello world"},
    "qa": {"answer": "a cat", "choices": ["a dog", "a cat", "birds", "rain"]},
}
"""Task -> {column: value} of one reference row."""
