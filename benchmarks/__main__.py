"""``python -m benchmarks run [--quick] [--out DIR] [--only 1,2] [--reps N] [--mirror-arg A]``:
start everything on 127.0.0.1, run the scenarios of issues 6 and 11, print and write the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.settings import ALL_SCENARIOS, Settings

MiB = 1024 * 1024


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the benchmarks")
    run.add_argument("--quick", action="store_true", help="small sizes, one repetition (CI)")
    run.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    run.add_argument("--only", help="comma-separated scenario numbers (default: all)")
    run.add_argument("--reps", type=int, help="repetitions per scenario (scenarios 1 and 5: +2)")
    run.add_argument("--large-mib", type=int, help="size of the large layer in MiB")
    run.add_argument("--work-dir", type=Path, help="parent of the temporary work directory")
    run.add_argument(
        "--retention-images", type=int, help="cached images of scenario 7 (full: 100,000)"
    )
    run.add_argument(
        "--wait-idle",
        type=float,
        metavar="SECONDS",
        help="first wait up to SECONDS for the load average to drop below 0.5",
    )
    run.add_argument("--keep", action="store_true", help="keep the work directory")
    run.add_argument(
        "--mirror-arg",
        action="append",
        default=[],
        help="extra argument for every 'mirror serve' (repeatable), e.g. --mirror-arg=--config=F",
    )
    again = commands.add_parser("report", help="re-render results.md and plots from results.json")
    again.add_argument("dir", type=Path, help="a results folder written by 'run'")
    readme = commands.add_parser(
        "readme", help="regenerate README.md's benchmark table from a run's results.json"
    )
    readme.add_argument("dir", type=Path, help="a results folder written by 'run'")
    readme.add_argument("--readme", type=Path, default=Path("README.md"))
    readme.add_argument(
        "--published",
        default="benchmarks/published/results.md",
        help="where the run's whole report is committed (the README links it)",
    )
    return top


def main(argv: list[str] | None = None) -> int:
    """Run and print the Markdown report; exit 1 if a scenario failed or a fact was violated."""
    args = parser().parse_args(argv)
    if args.command == "readme":
        from benchmarks.readme import regenerate

        regenerate(args.dir, args.readme, args.published)
        print(args.readme)
        return 0
    if args.command == "report":
        from benchmarks.results import Results
        from benchmarks.runner import render

        render(Results.load(args.dir / "results.json"), args.dir)
        print(args.dir / "results.md")
        return 0
    from benchmarks.runner import run

    scenarios: tuple[int, ...] = ALL_SCENARIOS
    if args.only:
        scenarios = tuple(int(x) for x in args.only.split(","))
        unknown = set(scenarios) - set(ALL_SCENARIOS)
        if unknown:
            print(
                f"unknown scenarios: {sorted(unknown)} (known: 1-{max(ALL_SCENARIOS)})",
                file=sys.stderr,
            )
            return 2
    settings = Settings.for_mode(
        args.quick,
        args.out,
        scenarios=scenarios,
        reps=args.reps,
        warm_reps=args.reps + 2 if args.reps else None,
        image_reps=args.reps + 2 if args.reps else None,
        large_size=args.large_mib * MiB if args.large_mib else None,
        work_dir=args.work_dir,
        retention_images=args.retention_images,
        keep=args.keep or None,
        wait_idle=args.wait_idle,
        mirror_args=tuple(args.mirror_arg) or None,
    )
    try:
        results, complete = run(settings)
    except KeyboardInterrupt:
        print("interrupted: everything the harness started was stopped", file=sys.stderr)
        return 130
    print((args.out / "results.md").read_text())
    violated = [f for f in results.facts if f.holds is False]
    for fact in violated:
        print(
            f"VIOLATED: scenario {fact.scenario} {fact.target}: {fact.name} = {fact.value:g},"
            f" expected {fact.expected:g}",
            file=sys.stderr,
        )
    return 0 if complete and not violated else 1


if __name__ == "__main__":
    sys.exit(main())
