"""A dry run's report lines judged in bulk: each repository's images read from the snapshot
in one query and judged as tuples (no object per image unless its policy looks at it), in
the order, and with the facts and decisions, of ``inventory.images`` and ``rules.decide``."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from mirror.retention.audit import iso
from mirror.retention.inventory import Image, checked, groups_of
from mirror.retention.names import policy_name
from mirror.retention.policy import RetentionPolicy
from mirror.retention.rules import Decision, decide, uniform
from mirror.retention.snapshot import ImageRow
from mirror.retention.view import ImageSource

# A report line: repository, digest, media type, size, tags, last pull, last tagged,
# cached at, policy, action, rule, reason, cooling until (times as ISO 8601 text).
Line = tuple[
    str,
    str,
    str,
    int,
    list[str],
    str | None,
    str | None,
    str | None,
    str,
    str,
    str,
    str,
    str | None,
]
# The JSON member names of a line's fields, in order.
FIELDS = (
    "repository",
    "digest",
    "media_type",
    "size",
    "tags",
    "last_pull",
    "last_tagged",
    "cached_at",
    "policy",
    "action",
    "rule",
    "reason",
    "cooling_until",
)
# The policy of a repository (``HOST/REPO``) and since when it applies to it.
Governing = Callable[[str], tuple[RetentionPolicy, float]]


def line_dict(line: Line) -> dict[str, object]:
    """A line as the report's JSON object."""
    return dict(zip(FIELDS, line, strict=True))


# A judged image: its report line, and its decision when that is to delete it.
Judged = tuple[Line, Decision | None]


def report_lines(
    snapshot: ImageSource, governing: Governing, now: float, cooling_period: float
) -> Iterator[Line]:
    """Every image's report line, repositories in name order, groups in digest order."""
    for judged in repositories_judged(snapshot, governing, now, cooling_period):
        for line, _ in judged:
            yield line


def repositories_judged(
    snapshot: ImageSource, governing: Governing, now: float, cooling_period: float
) -> Iterator[list[Judged]]:
    """Each repository's images judged (one list per repository, in name order): what a dry
    run reports and a deleting run deletes."""
    judged = _Run(now, cooling_period)
    for upstream, repo in snapshot.repositories():
        policy, since = governing(policy_name(upstream, repo))
        yield list(judged.repository(snapshot, upstream, repo, policy, since))


def spared(line: Line) -> Line:
    """The line of an image selected but pulled while the run was deciding (so kept)."""
    *head, _, _, reason, cooling = line
    kept = (*head, "keep", "pulled-during-run", f"pulled while the run was deciding ({reason})")
    return (*kept, cooling)  # type: ignore[return-value]


class _Run:
    """What one run judges by: its ``now`` (and its ISO text) and the cooling period."""

    def __init__(self, now: float, cooling_period: float) -> None:
        self.now = now
        self.now_iso = iso(now)
        self.cooling_period = cooling_period

    def repository(
        self,
        snapshot: ImageSource,
        upstream: str,
        repo: str,
        policy: RetentionPolicy,
        since: float,
    ) -> Iterator[Judged]:
        """The lines of one repository's images, with the decisions to delete."""
        rows = snapshot.images(upstream, repo)
        untagged_at = snapshot.untagged(upstream, repo)
        groups = _grouped(snapshot, rows) if any(r[6] for r in rows) else [(r,) for r in rows]
        same = uniform(policy)
        name = policy_name(upstream, repo)
        for group in groups:
            facts = self._facts(group, untagged_at)
            tags, last_pull, last_tagged, _ = facts
            pull_iso = iso(last_pull)
            tagged_iso = self.now_iso if last_tagged == self.now else iso(last_tagged)
            for row in group:
                chosen = None
                if same is not None:
                    action, rule, reason, cooling = "keep", *same, None
                else:
                    image = _image(upstream, repo, row, group, facts)
                    d = decide(image, policy, since, self.now, self.cooling_period)
                    action = "delete" if d.delete else "keep"
                    rule, reason, cooling = d.rule, d.reason, iso(d.cooling_until)
                    chosen = d if d.delete else None
                line: Line = (
                    *(name, row[0], row[1], row[2], tags, pull_iso, tagged_iso, iso(row[3])),
                    *(policy.name, action, rule, reason, cooling),
                )
                yield line, chosen

    def _facts(self, group: tuple[ImageRow, ...], untagged_at: dict[str, float]) -> _Facts:
        """A group's tags, last pull, when it last had a tag, and since when it has had none
        (``Image``'s group facts)."""
        tags = sorted(t for row in group if row[4] for t in row[4].split("\n"))
        pulled = [row[5] for row in group if row[5] is not None]
        last_pull = max(pulled) if pulled else None
        if tags:
            return tags, last_pull, self.now, self.now
        known = [untagged_at[row[0]] for row in group if row[0] in untagged_at]
        untagged_since = max(untagged_at.get(row[0], row[3]) for row in group)
        return tags, last_pull, max(known) if known else None, untagged_since


# A group's facts: tags, last pull, last tagged, untagged since.
_Facts = tuple[list[str], float | None, float | None, float]


def _image(
    upstream: str, repo: str, row: ImageRow, group: tuple[ImageRow, ...], facts: _Facts
) -> Image:
    """The ``Image`` of ``row`` in ``group`` (for a policy that looks at each image)."""
    tags, last_pull, last_tagged, untagged_since = facts
    return Image(
        upstream,
        repo,
        checked(row[0]),
        row[1],
        row[2],
        row[3],
        row[5],
        tuple(tags),
        last_pull,
        last_tagged,
        untagged_since,
        tuple(checked(r[0]) for r in group),
    )


def _grouped(snapshot: ImageSource, rows: list[ImageRow]) -> list[tuple[ImageRow, ...]]:
    """The rows of a repository with children (an index's), their children's rows added
    (transitively), as groups: connected components, each in digest order, in the order of
    their first digests (``inventory``'s groups)."""
    found = {row[0]: row for row in rows}
    pending = [row for row in rows if row[6]]
    while pending:
        missing = {c for row in pending for c in row[6].split("\n") if c not in found}  # type: ignore[union-attr]
        pending = []
        for row in snapshot.children(missing):
            found[row[0]] = row
            if row[6]:
                pending.append(row)
    children = {d: tuple(row[6].split("\n")) if row[6] else () for d, row in found.items()}
    return [tuple(found[d] for d in group) for group in groups_of(found, children.__getitem__)]
