"""CPU-scale replication of the papers' ablations on generated needle-in-a-haystack audio.

    python benchmarks/replicate/run.py                      # the full study (3 seeds, rows 1-4) -> docs/results.md
    python benchmarks/replicate/run.py --quick --out DIR    # minutes: checks the pipeline, numbers mean nothing
    python benchmarks/replicate/run.py --dry-run            # the runs and the estimated wall time, nothing run

Rows (README.md in this folder): 1 timestamp prompting (none / text 1 s / tokens semantic / tokens random),
2 GRPO after the best SFT variant (event F1 alone / variance-gated event F1 x mIoU), 3 SFT with vs without
negatives (existence accuracy), 4 text-timestamp granularity (0.2 / 1 / 2 s). Every run is a subprocess of the
real entry points. Rerunning the command continues an interrupted study (finished stages are skipped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402
import niah  # noqa: E402
import plan  # noqa: E402
import report  # noqa: E402
import study  # noqa: E402

logger = logging.getLogger("replicate")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="A few steps on a test-size model: checks the pipeline.")
    p.add_argument("--seeds", type=int, default=None, help="Number of seeds (default: 3; quick: 1).")
    p.add_argument(
        "--out", default=None, help="Output folder (default outputs/replicate, quick: outputs/replicate_quick)."
    )
    p.add_argument("--results", default=None, help="Results file (default docs/results.md; quick: OUT/results.md).")
    p.add_argument(
        "--jobs", type=int, default=2, help="Training/evaluation subprocesses run side by side (1 thread each)."
    )
    p.add_argument("--rows", default="1,2,3,4", help="Comma-separated rows of the study to run.")
    p.add_argument("--variants", default="", help="Comma-separated SFT variants to run (default: all of the rows').")
    p.add_argument(
        "--preset", default=None, help="Model preset (default: mini-qwen2-audio; quick: tiny-qwen2.5-omni)."
    )
    p.add_argument("--sft-steps", type=int, default=None, help="SFT steps of every variant (default: 300).")
    p.add_argument("--grpo-lr", type=float, default=None, help="GRPO learning rate (default: 3e-4).")
    p.add_argument("--dry-run", action="store_true", help="List the runs and the estimated wall time; run nothing.")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="Rewrite the results file from the finished runs and OUT/study.json (command, wall time); train nothing.",
    )
    return p.parse_args(argv)  # fmt: skip


def settings(a: argparse.Namespace) -> plan.Settings:
    s = (
        plan.Settings.quick_mode(tuple(range(a.seeds or 1)))
        if a.quick
        else plan.Settings(seeds=tuple(range(a.seeds or 3)))
    )
    only = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    unknown = [v for v in only if v not in plan.VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; choose among {sorted(plan.VARIANTS)}")
    steps = {} if a.sft_steps is None else {"sft_steps": a.sft_steps, "neg_steps": a.sft_steps}
    if a.grpo_lr is not None:
        steps["grpo_lr"] = a.grpo_lr
    if a.preset is not None:
        steps.update(preset=a.preset, freeze_encoder=None)  # re-derived from the new preset
    return dataclasses.replace(s, only=only, **steps)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    s = settings(a)
    rows = sorted({int(r) for r in a.rows.split(",") if r.strip()})
    if not rows or any(r not in plan.ROWS for r in rows):
        raise SystemExit(f"--rows: choose among {sorted(plan.ROWS)}, got {a.rows!r}")
    out = Path(a.out).resolve() if a.out else plan.ROOT / "outputs" / ("replicate_quick" if a.quick else "replicate")
    results = Path(a.results or (out / "results.md" if a.quick else plan.ROOT / "docs" / "results.md")).resolve()
    t0 = time.time()
    if a.dry_run:
        layout = study.Layout(out, {}, {seed: f"<{s.preset} seed {seed}>" for seed in s.seeds})
        jobs = study.build_jobs(layout, s, rows, {})
        for job in jobs:
            print(f"{job.name:24s} ~{job.cost / 60:5.1f} min" + (f"  after {len(job.deps)} runs" if job.deps else ""))
        wall = study.estimate_wall(jobs, a.jobs)
        print(f"{len(jobs)} runs; estimated wall time with --jobs {a.jobs}: {wall / 60:.0f} min "
              f"(step times in study.STEP_SECONDS)")  # fmt: skip
        return 0
    data = niah.build(out / "data", s.data)
    checkpoints = {seed: models.checkpoint(s.preset, out, seed) for seed in s.seeds}
    layout = study.Layout(out, data, checkpoints)
    if a.report_only:
        return report_only(out, results, layout, s, rows)
    selection: dict = {}
    jobs = study.build_jobs(layout, s, rows, selection)
    done_before = sum(stage_done(layout, s, rows))
    logger.info("%d runs (%d stages already finished) on %d lanes", len(jobs), done_before, a.jobs)
    failures = plan.run_jobs(jobs, a.jobs)
    if 2 in rows and not selection:  # every GRPO stage was skipped: recompute the choice for the report
        try:
            variant, scores = study.best_sft_variant(layout, s.seeds, s.candidates())
            selection.update(variant=variant, val_mIoU=scores)
        except RuntimeError as err:
            failures.setdefault("row 2 selection", str(err))
    meta = {
        "command": "python " + " ".join(shlex.quote(x) for x in [str(Path(__file__).relative_to(plan.ROOT)), *(argv if argv is not None else sys.argv[1:])]),
        "machine": report.machine(),
        "jobs": a.jobs,
        "family": json.loads((Path(checkpoints[s.seeds[0]]) / "config.json").read_text())["model_type"],
        "parameters": models.parameter_count(checkpoints[s.seeds[0]]),
        "he_init": s.preset in models.STUDY_PRESETS,
        "encoder": models.encoder_kind(s.preset),
        "data": niah.describe(data),
        "wall_seconds": time.time() - t0,
        "skipped_stages": done_before,
        "selection": selection,
        "failures": failures,
        "settings": s.to_dict(),
    }  # fmt: skip
    (out / "study.json").write_text(json.dumps(meta, indent=2, default=str))
    report.write(results, layout, s, rows, meta)
    logger.info(
        "wrote %s (%.1f min)%s",
        results,
        meta["wall_seconds"] / 60,
        f"; {len(failures)} runs failed" if failures else "",
    )
    return 1 if failures else 0


def report_only(out: Path, results: Path, layout: study.Layout, s: plan.Settings, rows: list[int]) -> int:
    """Render the results of an earlier invocation again (after a change to the report), keeping its metadata."""
    meta_path = out / "study.json"
    if not meta_path.exists():
        raise SystemExit(f"--report-only: {meta_path} not found; run the study first")
    meta = json.loads(meta_path.read_text())
    now, recorded = json.loads(json.dumps(s.to_dict(), default=str)), meta.get("settings", {})
    differ = sorted(k for k in recorded if now.get(k) != recorded[k])
    if differ:
        raise SystemExit(f"--report-only: {differ} differ from {meta_path}; pass the options of that invocation")
    if 2 in rows and not meta.get("selection"):
        variant, scores = study.best_sft_variant(layout, s.seeds, s.candidates())
        meta["selection"] = {"variant": variant, "val_mIoU": scores}
    report.write(results, layout, s, rows, meta)
    logger.info("wrote %s from the runs in %s", results, out)
    return 0


def stage_done(layout: study.Layout, s: plan.Settings, rows: list[int]):
    """Which training and evaluation stages have already finished (an interrupted study being continued)."""
    names = ["base", *study.variants_for(rows, s), *(plan.GRPO_RUNS if 2 in rows else ())]
    for name in names:
        label = "grpo" if name in plan.GRPO_RUNS else "sft"
        for seed in s.seeds:
            run = layout.run_dir(name, seed)
            yield (run / label / "final" / "rl_audio.json").exists()
            yield (run / "eval" / "metrics.json").exists()


if __name__ == "__main__":
    sys.exit(main())
