"""How ``mirror retention`` prints policies and run reports (the JSON of the admin API, as
lines for a terminal)."""

from __future__ import annotations

from typing import Any


def format_policies(policies: list[dict[str, Any]]) -> str:
    """One line per policy: its criteria, exempt tags, repositories and cooling period."""
    lines = []
    for p in policies:
        criteria = [
            f"not pulled for {p['not_pulled_days']:g} days"
            if p["not_pulled_days"] is not None
            else "",
            f"not tagged for {p['not_tagged_days']:g} days"
            if p["not_tagged_days"] is not None
            else "",
        ]
        chosen = f" {p['match'].upper()} ".join(c for c in criteria if c) or "retain everything"
        exempt = ", ".join(p["exempt_tags"]) or "-"
        repos = ", ".join(p["repositories"]) or ("(every other repository)" if p["global"] else "-")
        lines.append(
            f"{p['name']}: {chosen}; exempt tags: {exempt}; repositories: {repos}"
            + (f"; cooling until {p['cooling_until']}" if p["cooling_until"] else "")
        )
    return "\n".join(lines)


def format_line(line: dict[str, Any], *, dry_run: bool) -> str:
    """One image of a report: the action, the image, and the rule that retained or selected it."""
    action = {"delete": "DELETE" if not dry_run else "WOULD DELETE"}.get(line["action"], "keep")
    tags = ",".join(line["tags"]) or "-"
    return (
        f"{action:12} {line['repository']}@{line['digest'][:19]} policy={line['policy']} "
        f"rule={line['rule']} last-pull={line['last_pull'] or 'never'} "
        f"last-tagged={line['last_tagged'] or 'never'} tags={tags}: {line['reason']}"
    )


def format_report(report: dict[str, Any]) -> str:
    """One line per image, then what the run did."""
    lines = [format_line(line, dry_run=report["dry_run"]) for line in report["images"]]
    selected = sum(1 for line in report["images"] if line["action"] == "delete")
    if report["dry_run"]:
        lines.append(f"dry run: {len(report['images'])} images, {selected} would be deleted")
    else:
        lines.append(
            f"run {report['run']}: {len(report['images'])} images, {report['evicted']} evicted, "
            f"{len(report['deleted'])} objects deleted, {report['bytes_freed']} bytes freed, "
            f"{len(report['deferred'])} deferred (in use)"
        )
    return "\n".join(lines)
