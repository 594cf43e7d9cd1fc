"""Benchmark: the worst-case time of one reward call on hostile completions of up to 100,000 characters.

Every reward of ``rewards.REGISTRY`` (audiology with a stub transcriber: the ASR model's own cost is not parsing)
scores, for each task it applies to, a set of adversarial completions: the patterns that were slow before
completions were capped (``"1-2\\n"`` repeated, quote/backslash runs, thousands of windows, deep brackets, long
reasoning with steps), seeded random mixes of answer fragments, and a typical answer, each at several lengths up
to 100k characters. Each call is timed (best of ``--repeat``) and the table prints, per reward, the typical
answer's time, the worst completion and its time, and how many calls took over the budget (50 ms).

Run: ``python benchmarks/reward_time.py [--repeat 3] [--budget-ms 50]``. The figures in ``benchmarks/README.md``
come from this command on the project's 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

# Run as a script, this folder comes first on sys.path and would hide the `rewards` package: use the repository root.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import numpy as np  # noqa: E402

import rewards  # noqa: E402
from rewards.audiology import AudiologyVerify  # noqa: E402
from rewards.examples import EXAMPLE_COLUMNS  # noqa: E402

COLUMNS = EXAMPLE_COLUMNS
AUDIO = {"array": np.zeros(16_000 * 10, dtype=np.float32), "sampling_rate": 16_000}
TYPICAL = "From 1.20 seconds to 3.40 seconds."
FRAGMENTS = [
    "From ", " seconds to ", " seconds.", "{", "}", '"dog": ', "[", "]", ", ", "-", "<", ">", "\n", "starts at ",
    " and ends at ", "Yes", "No.", "(b) ", "a cat", "nan", "1e308", "-3", "'", '"', ":", "</think>", "<answer>",
    "</answer>", "0:03", "[1.5s - 2.5s]", "\\", "1", ".5", " ", "dog barking from 1 to 2 s",
]  # fmt: skip


def patterns(size: int, seed: int) -> dict[str, str]:
    """Named hostile completions of about ``size`` characters."""
    rng = random.Random(seed)

    def rep(unit: str) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    return {
        "typical": TYPICAL,
        "1-2 lines": rep("1-2\n"),
        "quotes/backslashes": rep('"\\\'"\\'),
        "windows": rep("From 1 seconds to 2 seconds. "),
        "bracket windows": rep("[1.5s - 2.5s] "),
        "keyed events": rep('{"dog": [[1, 2]], "cat": [[3, 4]]} '),
        "deep brackets": "[" * (size // 2) + "]" * (size // 2),
        "steps": rep("[0.5s - 1.5s] the dog barks. "),
        "yes/no": rep("Yes no "),
        "digits": rep("1234567890."),
        "reasoning + answer": rep("thinking about the audio. ") + "<answer>(b) a cat</answer>",
        "random fragments": "".join(rng.choice(FRAGMENTS) for _ in range(size // 6 + 1))[:size],
    }


def build_rewards() -> list:
    built = [rewards.get(name) for name in rewards.REGISTRY if name != "audiology_verify"]
    built.append(AudiologyVerify(transcriber=lambda crops, rate: ["a dog barks"] * len(crops)))
    return built


def time_call(fn, text: str, task: str, repeat: int) -> float:
    columns = {k: [v] for k, v in COLUMNS[task].items()}
    columns.update(task=[task], audio=[AUDIO])
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(completions=[text], **columns)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="Completion lengths in characters.")
    p.add_argument("--repeat", type=int, default=3, help="Timed calls per case (the best counts).")
    p.add_argument("--budget-ms", type=float, default=50.0, help="Per-call budget in milliseconds.")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    for fn in build_rewards():
        typical, worst, over, calls = 0.0, (0.0, ""), 0, 0
        for task in fn.tasks:
            time_call(fn, TYPICAL, task, 1)  # warm-up: lazy imports (nltk, jiwer) are not parsing
            typical = max(typical, time_call(fn, TYPICAL, task, a.repeat))
            for size in sizes:
                for name, text in patterns(size, seed=size).items():
                    seconds = time_call(fn, text, task, a.repeat)
                    calls += 1
                    over += seconds * 1e3 > a.budget_ms
                    if seconds > worst[0]:
                        worst = (seconds, f"{name}, {len(text):,} chars, {task}")
        rows.append((fn.__name__, typical * 1e3, worst[0] * 1e3, worst[1], over, calls))
    print(f"| reward | typical answer (ms) | worst call (ms) | worst completion | calls over {a.budget_ms:g} ms |")
    print("|---|---:|---:|---|---:|")
    for name, typical_ms, worst_ms, what, over, calls in rows:
        print(f"| {name} | {typical_ms:.2f} | {worst_ms:.1f} | {what} | {over} / {calls} |")


if __name__ == "__main__":
    main()
