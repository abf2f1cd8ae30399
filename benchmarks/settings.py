"""Sizes, repetitions and durations of a run: ``full`` (the published numbers) or ``quick``
(CI: small sizes, one repetition, same scenarios and correctness facts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024
ALL_SCENARIOS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)


@dataclass(frozen=True)
class Settings:
    """Everything a run is parameterised by."""

    quick: bool
    out: Path
    scenarios: tuple[int, ...] = ALL_SCENARIOS
    # Content bytes of the single large layer (the tar is a few KiB larger).
    large_size: int = 1024 * MiB
    layer_count: int = 50
    layer_size: int = 1 * MiB
    # Repetitions: scenario 1 gets ``warm_reps``, 5 ``image_reps``, the others ``reps``.
    warm_reps: int = 5
    reps: int = 3
    # Whole-image pulls (scenario 5) are short and noisy: more repetitions.
    image_reps: int = 5
    herd: int = 32
    memory_clients: int = 16
    # Cached images judged by the retention dry run (scenario 7).
    retention_images: int = 100_000
    # Scenario 8: bytes of each pushed blob, PATCH chunk size, and concurrent pushes (RSS).
    push_size: int = 1024 * MiB
    push_chunk: int = 16 * MiB
    push_clients: int = 8
    # The mirror's ``auth.hash_cost`` in scenario 8 (None: its default); quick mode lowers it
    # so that logins cost nothing on a loaded CI machine.
    auth_hash_cost: int | None = None
    # Scenario 10: concurrent whole-image pulls through the tier of 3 and through one replica.
    tier_clients: int = 48
    # Scenario 11: concurrent warm pulls of the large blob (and the cold herd) with 2 workers.
    worker_clients: int = 16
    # Scenario 13: the WAN link in front of the upstream, one-way delay (s) and rate per
    # direction (bytes/s, shared by every connection).
    wan_delay: float = 0.020
    wan_rate: float = 100e6
    # Seconds per load-generator cell (after ``load_warmup``).
    load_duration: float = 2.0
    load_warmup: float = 0.3
    # Upper bound on any one download, in seconds.
    transfer_timeout: float = 300.0
    # Seconds without new upstream log lines before a cold fill counts as settled.
    settle_quiet: float = 1.0
    mirror_args: tuple[str, ...] = field(default_factory=tuple)
    work_dir: Path | None = None
    # Seconds to wait, at most, for the machine's load average to drop below 0.5 first.
    wait_idle: float = 0.0
    keep: bool = False

    @classmethod
    def for_mode(cls, quick: bool, out: Path, **overrides: object) -> Settings:
        """The defaults of the mode, then ``overrides`` (``None`` values ignored)."""
        base: dict[str, object] = {"quick": quick, "out": out}
        if quick:
            base.update(
                large_size=16 * MiB,
                layer_size=16 * 1024,
                warm_reps=2,
                reps=1,
                image_reps=1,
                load_duration=0.4,
                load_warmup=0.1,
                transfer_timeout=60.0,
                settle_quiet=0.3,
                retention_images=2_000,
                push_size=4 * MiB,
                push_chunk=256 * 1024,
                auth_hash_cost=256,
                tier_clients=4,
                worker_clients=4,
            )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)  # type: ignore[arg-type]
