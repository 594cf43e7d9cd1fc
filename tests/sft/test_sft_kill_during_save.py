"""kill -9 during a checkpoint save, then the same command again: the relaunch sets the torn checkpoint aside,
resumes from the last complete one and finishes the run.

The kill is real: `rl_audio.sft` runs as a subprocess with a checkpoint every step, and the test polls `output_dir`
for `checkpoint-N` (N >= 3, so that complete checkpoints precede it) while it is not complete yet (transformers
writes `trainer_state.json` last) and sends SIGKILL the moment it sees it, at three points of the save (one run each): when the folder appears, once the weights
are there, once the optimizer state is there. The save window of a tiny model is milliseconds, so a poll can miss
it (the save finishes, or the kill lands just after it). Every run's relaunch must complete and resume from the last
complete checkpoint; at least one run must have torn a checkpoint, and on those the log must name the checkpoint set
aside and the one resumed from. (Here all three phases tore their checkpoint in each of 3 runs of the test.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_audio.trainers.resume import checkpoint_problem, checkpoints_in

ROOT = Path(__file__).resolve().parents[2]
# where in the save to kill: as soon as the folder exists, after the weights, after the optimizer state
PHASES = ("", "model.safetensors", "optimizer.pt")
MAX_STEPS = 6


def command(out: Path, default_data_args) -> list[str]:
    # Full fine-tuning (no LoRA): model.safetensors and the optimizer state make the save window longest.
    return [sys.executable, "-m", "rl_audio.sft", "recipes/cpu/spotsound.yaml", "--output_dir", str(out),
            *default_data_args, "--use_peft", "false", "--max_steps", str(MAX_STEPS), "--save_steps", "1",
            "--save_total_limit", "20", "--logging_steps", "1", "--per_device_train_batch_size", "1"]  # fmt: skip


def kill_during_save(cmd: list[str], out: Path, env: dict, step: int, written: str) -> bool:
    """Run `cmd`; SIGKILL it as soon as `checkpoint-{step}/{written}` exists (`written` "": the folder) while its
    `trainer_state.json` does not (the save has begun and not finished). True if killed, False if it ended first."""
    folder = out / f"checkpoint-{step}"
    marker, state = folder / written, folder / "trainer_state.json"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None:
            if marker.exists() and not state.exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.0005)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_kill_9_during_a_save_then_relaunch(tmp_path, default_data_args, subprocess_env):
    torn_hits = []
    for attempt, written in enumerate(PHASES):
        out = tmp_path / f"try{attempt}"
        cmd = command(out, default_data_args)
        step = 3 + attempt % (MAX_STEPS - 3)  # checkpoints 1 and 2 (at least) are complete before it
        if not kill_during_save(cmd, out, subprocess_env, step, written):
            continue  # the run finished before the save was caught half-way
        found = checkpoints_in(out)
        torn = [p for p in found if checkpoint_problem(p) is not None]
        complete = [p for p in found if checkpoint_problem(p) is None]
        assert len(torn) <= 1, torn  # one save at a time: only the newest can be torn

        again = subprocess.run(cmd, cwd=ROOT, env=subprocess_env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-6000:]
        log = again.stderr
        assert complete and complete[-1].name in (f"checkpoint-{step - 1}", f"checkpoint-{step}"), found
        assert f"resuming from {complete[-1]}, the last complete checkpoint" in log
        if torn:
            assert torn[0].name == f"checkpoint-{step}" and complete[-1].name == f"checkpoint-{step - 1}"
            torn_hits.append(written or "(folder only)")
            assert f"skipping {torn[0]}: not a complete checkpoint" in log
            assert f"moving it to {out / ('torn-' + torn[0].name)}" in log
            assert (out / f"torn-{torn[0].name}").is_dir()
        state = json.loads((out / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
        assert state["global_step"] == MAX_STEPS
        steps = [h["step"] for h in state["log_history"] if "loss" in h]
        assert steps == list(range(1, MAX_STEPS + 1))  # each step once: the torn step was trained again
        assert (out / "final" / "model.safetensors").is_file()
        assert all(checkpoint_problem(p) is None for p in checkpoints_in(out))
    assert torn_hits, f"no SIGKILL landed inside a save in {len(PHASES)} tries"
