"""Write ``docs/results.md``: one table per row (mean ± std over seeds), the papers' claims beside the measured
direction, and what the study ran on (command, model, data, times, machine)."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
from pathlib import Path

from plan import GRPO_RUNS, ROWS, VARIANTS, Settings
from study import Layout
from tables import fmt, grounding_event_f1, log_values, mean_std, read_metrics, stage_seconds, verdict

# The papers' numbers each comparison stands for (percentages).
ROW1_CLAIMS = [
    ("text1", "none", +1, "SpotSound Table 7: + timestamps (1 s text) over FT, mIoU +4.6 to +19.7 (Qwen2-Audio)"),
    ("tokens_sem", "none", +1, "TimePro-RL Table 3: w/ ASTP 71.7 vs SFT baseline 69.9 AG mIoU (+1.8)"),
    ("tokens_rand", "none", -1, "TimePro-RL Table 3: ASTP random init 68.8 vs 69.9 AG mIoU (-1.1)"),
    ("tokens_sem", "tokens_rand", +1, "TimePro-RL Table 3: semantic 71.7 vs random 68.8 AG mIoU (+2.9)"),
]
TEST_CELLS = ("test:mIoU", "test:R1@0.5", "test:R1@0.7", "shifted:mIoU")  # rows 1 and 4
BASE_LABEL = "base model, before SFT (no timestamps)"
ROW3_CLAIM = "SpotSound Table 4: SpotSound-Q (trained with negatives) 87.6 / 85.8 vs Qwen2-Audio 72.2 / 43.1 (Clotho-Moment pos. / neg.)"
ROW4_CLAIMS = [
    ("text0.2", "text1", +1, "SpotSound Table 8 (AudioGrounding, short clips): 0.2 s 72.7 vs 1 s 70.3"),
    ("text2", "text1", -1, "SpotSound Table 8 (AudioGrounding): 2 s 69.7 vs 1 s 70.3 (Clotho-Moment: 87.2 vs 85.6)"),
]  # fmt: skip


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip() or platform.platform()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"uname": uname, "nproc": nproc, "cpu": cpu, "memory": mem}


def _values(layout: Layout, s: Settings, variant: str, manifest: str | None, *keys: str) -> list[float | None]:
    out = []
    for seed in s.seeds:
        m = read_metrics(layout.run_dir(variant, seed), manifest)
        for k in keys:
            m = m.get(k) if isinstance(m, dict) else None
        out.append(m)
    return out


def _grounding(layout: Layout, s: Settings, variant: str, *cells: str) -> list[str]:
    """Table cells ``split:metric`` (e.g. ``test:mIoU``) of a variant's grounding scores, mean ± std over seeds."""
    out = []
    for cell in cells:
        split, metric = cell.split(":")
        out.append(fmt(_values(layout, s, variant, f"{split}/grounding", "grounding", metric)))
    return out


def _ebf1(layout: Layout, s: Settings, variant: str, key: str = "test/grounding") -> list[float | None]:
    return [grounding_event_f1(layout.run_dir(variant, seed), key, layout.manifest(key)) for seed in s.seeds]


def prompt_tokens(layout: Layout, s: Settings, variant: str) -> float | None:
    """Mean prompt length (tokens; audio span, timestamps and question) over the test grounding rows."""
    from rl_audio.data import load_manifest, render_question
    from rl_audio.models.loading import load_adapter
    from rl_audio.models.prompting import PromptBuilder
    from rl_audio.models.timestamps import TimestampSpec

    final = layout.run_dir(variant, s.seeds[0]) / "sft" / "final"
    if not (final / "rl_audio.json").exists():
        return None
    info = json.loads((final / "rl_audio.json").read_text())
    adapter = load_adapter(str(final))
    builder = PromptBuilder(adapter, TimestampSpec(**info["timestamps"]))
    rows = load_manifest(layout.manifest("test/grounding"))
    lengths = [
        len(
            builder.prompt_ids(
                render_question(r, info["answer_style"]), adapter.frame_counts_for_seconds(r["duration"])
            )
        )
        for r in rows
    ]
    return statistics.fmean(lengths)


def seconds_per_step(layout: Layout, s: Settings, variant: str, label: str = "sft") -> list[float | None]:
    out = []
    for seed in s.seeds:
        runtime = log_values(layout.run_dir(variant, seed) / f"{label}.log", "train_runtime")
        steps = log_values(layout.run_dir(variant, seed) / f"{label}.log", "train_steps_per_second")
        out.append(1 / steps[-1] if steps and steps[-1] > 0 else (runtime[-1] if runtime else None))
    return out


def _secs(values: list[float | None]) -> str:
    return fmt(values, scale=1.0, digits=2)


def row1(layout: Layout, s: Settings) -> list[str]:
    lines = [
        "## Row 1. Timestamp prompting (SpotSound Table 7, TimePro-RL Table 3)",
        "",
        "SFT of each seed's base model on the positive needle-in-a-haystack grounding rows. Test: held-out clips; "
        "shifted: the same test clips with each event moved elsewhere (SpotSound App. B.3); val: model selection "
        "only. Scores in %, mean ± std over seeds.",
        "",
        "| SFT variant | test mIoU | test R1@0.5 | test R1@0.7 | shifted mIoU | shifted R1@0.5 | val mIoU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in ("base", *ROWS[1]):
        cells = _grounding(layout, s, v, *TEST_CELLS, "shifted:R1@0.5", "val:mIoU")
        lines.append(f"| {BASE_LABEL if v == 'base' else VARIANTS[v].label} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | paper | measured test mIoU difference | measured test R1@0.5 difference |",
              "|---|---|---|---|"]  # fmt: skip
    for a, b, claim, paper in ROW1_CLAIMS:
        d_miou = verdict(_values(layout, s, a, "test/grounding", "grounding", "mIoU"),
                         _values(layout, s, b, "test/grounding", "grounding", "mIoU"), claim)  # fmt: skip
        d_r1 = verdict(_values(layout, s, a, "test/grounding", "grounding", "R1@0.5"),
                       _values(layout, s, b, "test/grounding", "grounding", "R1@0.5"), claim)  # fmt: skip
        lines.append(f"| {VARIANTS[a].label} vs {VARIANTS[b].label} | {paper} | {d_miou} | {d_r1} |")
    return lines


def row2(layout: Layout, s: Settings, selection: dict) -> list[str]:
    lines = [
        "## Row 2. RL after SFT (TimePro-RL Table 3, last two rows)",
        "",
        "GRPO from the best SFT variant of row 1, chosen by mean validation mIoU over seeds "
        f"(validation mIoU: {json.dumps({k: round(v * 100, 1) for k, v in selection.get('val_mIoU', {}).items()})}"
        f"; chosen: **{selection.get('variant', '-')}**). Event F1: the `eb_f1` reward (pure 0.2 s collar, windows "
        "under 0.1 s earn nothing) averaged over the positive test queries. Fused groups: fraction of groups per step where Var(event F1) < 1e-6 and the "
        "reward became event F1 x mIoU, averaged over steps; zero-variance groups: TRL's `frac_reward_zero_std`, "
        "groups whose final reward had no variance and so gave no gradient; restored: fused groups whose fused reward "
        "had variance (fused minus zero-variance). A fused group whose event F1 is 0 for every completion stays at "
        "0 (eq. 2 multiplies), so fusion only restores a signal where every completion has the same non-zero event "
        "F1. Train reward: the mean reward GRPO optimised over the first and the last fifth of the steps.",
        "",
        "| run | event F1 before | event F1 after | mIoU before | mIoU after | R1@0.5 after | fused groups | "
        "zero-variance groups | restored | train reward, first -> last fifth |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    best = selection.get("variant")
    before_f1 = _ebf1(layout, s, best) if best else []
    before_miou = _values(layout, s, best, "test/grounding", "grounding", "mIoU") if best else []
    for name, (label, _) in GRPO_RUNS.items():
        fused, zero, restored, first, last = [], [], [], [], []
        for seed in s.seeds:
            log = layout.run_dir(name, seed) / "grpo.log"
            f, z = log_values(log, "rewards/fusion/fused_group_frac"), log_values(log, "frac_reward_zero_std")
            r = log_values(log, "reward")
            fused.append(statistics.fmean(f) if f else None)
            zero.append(statistics.fmean(z) if z else None)
            restored.append(fused[-1] - zero[-1] if f and z else None)
            k = max(1, len(r) // 5)
            first.append(statistics.fmean(r[:k]) if r else None)
            last.append(statistics.fmean(r[-k:]) if r else None)
        cells = [
            fmt(before_f1), fmt(_ebf1(layout, s, name)), fmt(before_miou),
            fmt(_values(layout, s, name, "test/grounding", "grounding", "mIoU")),
            fmt(_values(layout, s, name, "test/grounding", "grounding", "R1@0.5")), fmt(fused), fmt(zero),
            fmt(restored), f"{fmt(first, 1.0, 3)} -> {fmt(last, 1.0, 3)}",
        ]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    fused_f1, ebf1_f1 = _ebf1(layout, s, "grpo_fused"), _ebf1(layout, s, "grpo_ebf1")
    fused_m = _values(layout, s, "grpo_fused", "test/grounding", "grounding", "mIoU")
    ebf1_m = _values(layout, s, "grpo_ebf1", "test/grounding", "grounding", "mIoU")
    lines += [
        "",
        "| comparison | paper | measured event F1 difference | measured mIoU difference |",
        "|---|---|---|---|",
        f"| GRPO event F1 alone vs SFT | TimePro-RL Table 3: AG mIoU 72.7 vs 71.7; SED Eb-F1 56.9 vs 50.1 | "
        f"{verdict(ebf1_f1, before_f1, +1)} | {verdict(ebf1_m, before_miou, +1)} |",
        f"| GRPO fused vs SFT | TimePro-RL Table 3: AG mIoU 74.4 vs 71.7; SED Eb-F1 57.6 vs 50.1 | "
        f"{verdict(fused_f1, before_f1, +1)} | {verdict(fused_m, before_miou, +1)} |",
        f"| GRPO fused vs event F1 alone | TimePro-RL Table 3: AG mIoU 74.4 vs 72.7; SED Eb-F1 57.6 vs 56.9 | "
        f"{verdict(fused_f1, ebf1_f1, +1)} | {verdict(fused_m, ebf1_m, +1)} |",
    ]
    return lines


def row3(layout: Layout, s: Settings) -> list[str]:
    lines = [
        "## Row 3. Negatives (SpotSound Table 4)",
        "",
        "SFT with 1 s text timestamps on grounding and existence questions, with or without the negative "
        "(absent-event) rows; evaluated on the test clips with one positive and one negative query each. "
        "Existence accuracy in %.",
        "",
        "| SFT training data | existence acc. positive | existence acc. negative | existence acc. all | "
        "grounding mIoU (positives) | cascaded mIoU (grounded after a yes) | cascaded false alarms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in ROWS[3]:
        cells = [
            fmt(_values(layout, s, v, None, "existence", "accuracy_positive")),
            fmt(_values(layout, s, v, None, "existence", "accuracy_negative")),
            fmt(_values(layout, s, v, None, "existence", "accuracy")),
            fmt(_values(layout, s, v, None, "grounding", "mIoU")),
            fmt(_values(layout, s, v, None, "cascaded", "mIoU")),
            fmt(_values(layout, s, v, None, "cascaded", "false_alarm_rate")),
        ]
        lines.append(f"| {VARIANTS[v].label} | " + " | ".join(cells) + " |")
    neg = _values(layout, s, "neg", None, "existence", "accuracy_negative")
    noneg = _values(layout, s, "noneg", None, "existence", "accuracy_negative")
    pos = _values(layout, s, "neg", None, "existence", "accuracy_positive")
    nopos = _values(layout, s, "noneg", None, "existence", "accuracy_positive")
    lines += [
        "",
        "| comparison | paper | measured difference, negatives | measured difference, positives |",
        "|---|---|---|---|",
        f"| with vs without negatives | {ROW3_CLAIM} | {verdict(neg, noneg, +1)} | {verdict(pos, nopos, 0)} |",
    ]
    return lines


def row4(layout: Layout, s: Settings) -> list[str]:
    lines = [
        "## Row 4. Granularity of text timestamps (SpotSound Table 8)",
        "",
        "Sequence-length cost: mean prompt length of a test grounding question (audio placeholders, timestamps, "
        "question) and the measured training time per step (one thread).",
        "",
        "| granularity | test mIoU | test R1@0.5 | test R1@0.7 | shifted mIoU | prompt tokens | SFT s/step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in ROWS[4]:
        tokens = prompt_tokens(layout, s, v)
        cells = [
            *_grounding(layout, s, v, *TEST_CELLS),
            "-" if tokens is None else f"{tokens:.0f}",
            _secs(seconds_per_step(layout, s, v)),
        ]
        lines.append(f"| {VARIANTS[v].label} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | paper | measured test mIoU difference |", "|---|---|---|"]
    for a, b, claim, paper in ROW4_CLAIMS:
        d = verdict(_values(layout, s, a, "test/grounding", "grounding", "mIoU"),
                    _values(layout, s, b, "test/grounding", "grounding", "mIoU"), claim)  # fmt: skip
        lines.append(f"| {VARIANTS[a].label} vs {VARIANTS[b].label} | {paper} | {d} |")
    return lines


def times(layout: Layout, s: Settings, names: list[str]) -> list[str]:
    lines = ["| run | training s (mean ± std over seeds) | evaluation s |", "|---|---:|---:|"]
    for name in ["base", *names]:
        label = "grpo" if name in GRPO_RUNS else "sft"
        train = [stage_seconds(layout.run_dir(name, seed), label) for seed in s.seeds]
        ev = [stage_seconds(layout.run_dir(name, seed), "eval") for seed in s.seeds]
        title = GRPO_RUNS[name][0] if name in GRPO_RUNS else (BASE_LABEL if name == "base" else VARIANTS[name].label)
        lines.append(f"| {title} | {_secs(train)} | {_secs(ev)} |")
    return lines


def total_stage_seconds(layout: Layout, s: Settings, names: list[str]) -> dict[str, float]:
    totals = {"sft": 0.0, "grpo": 0.0, "eval": 0.0}
    for name in ["base", *names]:
        for seed in s.seeds:
            for label in totals:
                totals[label] += stage_seconds(layout.run_dir(name, seed), label) or 0.0
    return totals


DISCUSSION = "## Discussion"


def _kept_discussion(path: Path) -> list[str]:
    """The hand-written section that closes an earlier results file (from ``## Discussion`` on), kept on rewrite."""
    if not path.exists():
        return []
    text = path.read_text()
    start = text.find("\n" + DISCUSSION)
    return [text[start + 1 :].rstrip("\n"), ""] if start >= 0 else []


def write(path: Path, layout: Layout, s: Settings, rows: list[int], meta: dict) -> None:
    """Render the whole results file from the runs' outputs and the study metadata ``meta``.

    A ``## Discussion`` section at the end of the existing file is written by hand from the tables; it is kept
    (and has to be checked against the new numbers when the study is rerun with other settings).
    """
    names = [v for r in rows if r != 2 for v in ROWS[r]] + ([*ROWS[2], *GRPO_RUNS] if 2 in rows else [])
    names = list(dict.fromkeys(names))
    totals = total_stage_seconds(layout, s, names)
    m = meta["machine"]
    head = ["# Results: CPU-scale replication of the papers' ablations", ""]
    if s.quick:
        head += ["> **QUICK MODE.** A few optimizer steps on a test-size model and a handful of clips: this checks "
                 "that the pipeline runs end to end and writes every table. The numbers mean nothing.", ""]  # fmt: skip
    head += [
        f"- Command: `{meta['command']}`",
        f"- Machine: {m['cpu']}, {m['nproc']} cores, {m['memory']} RAM; `{m['uname']}`",
        f"- Parallel training processes: {meta['jobs']}, one thread each (`OMP_NUM_THREADS=1`)",
        f"- Model: `{s.preset}` ({meta['family']}), {meta['parameters'] / 1e6:.2f} M parameters, built from a "
        "config (`rl_audio.models.presets`); audio encoder: "
        + meta.get("encoder", "random")
        + ("; encoder convolutions He-initialised, `benchmarks/replicate/models.py`" if meta.get("he_init") else "")
        + "; the rest randomly initialised per seed; "
        + (
            "the encoder frozen (as in all three papers), every other parameter trained"
            if s.freeze_encoder
            else "full fine-tuning of every parameter"
        ),
        f"- Base model (stand-in for a pretrained audio LM): {s.base_steps} steps, batch {s.batch}, lr {s.base_lr:g}, "
        "no timestamps, on the `base` split (same clip lengths, 1-2 s events); each seed has its own base model",
        f"- Seeds: {', '.join(map(str, s.seeds))} (initialisation, base model and data order; the data set is fixed)",
        f"- SFT: {s.sft_steps} steps (row 3: {s.neg_steps}), batch {s.batch}, AdamW lr {s.sft_lr:g}, cosine, "
        f'{s.warmup} warm-up steps; answers in SpotSound\'s form "From s seconds to e seconds."',
        f"- GRPO: {s.grpo_steps} steps, {s.grpo_prompts} prompts x {s.num_generations} completions per step, lr "
        f"{s.grpo_lr:g}, beta {s.grpo_beta:g}, temperature {s.grpo_temperature:g}, at most "
        f"{s.max_completion_length} new tokens",
        "- Evaluation: greedy decoding, `rl_audio.evaluate` (the rewards' parser and graders)",
        f"- Wall time of this invocation: {meta['wall_seconds'] / 60:.1f} min (runs found finished were skipped: "
        f"{meta['skipped_stages']} stages). Summed over runs: SFT {totals['sft'] / 60:.1f} min, GRPO "
        f"{totals['grpo'] / 60:.1f} min, evaluation {totals['eval'] / 60:.1f} min (process-minutes; "
        f"{meta['jobs']} run side by side)",
        "",
        "### Data (generated needle in a haystack, `benchmarks/replicate/niah.py`)",
        "",
        "| manifest | rows | clips | tasks | event / clip, mean | max |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name, d in meta["data"].items():
        tasks = ", ".join(f"{k} {v}" for k, v in d["tasks"].items())
        mean, top = d["event_fraction_mean"], d["event_fraction_max"]
        fractions = "- | -" if mean is None else f"{mean:.1%} | {top:.1%}"
        head.append(f"| {name} | {d['rows']} | {d['clips']} | {tasks} | {fractions} |")
    spec = s.data
    head += [
        "",
        f"Clips of {spec.min_len:g}-{spec.max_len:g} s, one event of {spec.min_event:g}-{spec.max_event:g} s per "
        f"clip (10 procedural classes, 3 captions each), background {-spec.bg_rel_db:g} ± {spec.jitter_db:g} dB "
        f"under the event; data seed {spec.seed}.",
        "",
        "Beyond seed noise: two-sided t-test over the seeds, p < 0.05. The runs of one seed share its base model, "
        "initialisation and data order, so the test is paired by seed (Welch's unpaired p beside it; per-seed "
        "differences follow). Differences are in percentage points. "
        "Design, calibration and the setting's known limits: `benchmarks/replicate/README.md`.",
        "",
    ]
    body = []
    for r, fn in ((1, row1), (2, None), (3, row3), (4, row4)):
        if r not in rows:
            continue
        body += (row2(layout, s, meta.get("selection", {})) if r == 2 else fn(layout, s)) + [""]
    body += ["## Time per run", "", *times(layout, s, names), ""]
    if meta.get("failures"):
        body += ["## Runs that failed", ""] + [f"- {k}: {v}" for k, v in sorted(meta["failures"].items())] + [""]
    discussion = [] if s.quick else _kept_discussion(path)
    if discussion:
        head[2:2] = [
            "> What the tables show, how it compares with the papers and why: **Discussion**, at the end.",
            "",
        ]
    body += discussion
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head + body))


__all__ = ["machine", "mean_std", "write"]
