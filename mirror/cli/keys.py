"""``mirror keys list|rotate|retire``: the key-encryption keys of an encrypted cache, online
or offline."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, TextIO

from mirror.app.stores import open_store
from mirror.blobstore.encrypted import EncryptedBlobStore
from mirror.blobstore.rotate import census, clear, rewrap
from mirror.cli.cachedir import add_cache_flags, run_on_cache
from mirror.config import Config
from mirror.crypto.keys import KeyringError, new_kek
from mirror.crypto.sources import KeyFile
from mirror.errors import CorruptObject


def add(commands: Any) -> None:
    """Add ``keys`` and its actions to the ``mirror`` command's subparsers."""
    keys = commands.add_parser("keys", help="manage key-encryption keys")
    actions = keys.add_subparsers(dest="action", required=True)
    add_cache_flags(actions.add_parser("list", help="KEKs and how many objects each wraps"))
    rotate = actions.add_parser(
        "rotate", help="add a new KEK (key file) and re-wrap every object's data key under it"
    )
    add_cache_flags(rotate)
    rotate.add_argument(
        "--grace",
        type=float,
        default=2.0,
        help="seconds between passes while a running server may still commit under the old KEK",
    )
    retire = actions.add_parser("retire", help="remove an old KEK once nothing needs it")
    add_cache_flags(retire)
    retire.add_argument("kek_id", help="the KEK id to retire")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run a ``mirror keys`` action: 0 done, 1 found problems, 2 could not start."""

    def action(config: Config) -> int:
        if args.action == "list":
            return _list(config, out)
        if args.action == "rotate":
            return _rotate(config, args.grace, out, err)
        return _retire(config, args.kek_id, out, err)

    return run_on_cache(args, action, err)


def _encrypted(config: Config) -> EncryptedBlobStore:
    store = open_store(config)
    if not isinstance(store, EncryptedBlobStore):
        raise KeyringError("encryption.enabled = false: this cache has no keys")
    return store


def _list(config: Config, out: TextIO) -> int:
    store = _encrypted(config)
    counts = census(store)
    for kek in store.keys.ring.keks:
        mark = " (current)" if kek.id == store.keys.current.id else ""
        print(f"{kek.id}{mark}: {counts.pop(kek.id, 0)} objects", file=out)
    for kek_id, count in sorted(counts.items()):
        print(f"{kek_id or '-'} (not in the keyring): {count} objects", file=out)
    return 0


def _rotate(config: Config, grace: float, out: TextIO, err: TextIO) -> int:
    store = _encrypted(config)
    keys = store.keys
    source = keys.source
    if isinstance(source, KeyFile):
        kek = new_kek(os.urandom, time.time())
        keys.register(kek)
        source.save(keys.ring.with_current(kek))
        keys.refresh()
        print(f"added KEK {kek.id} to {source.path}", file=out)
    target = keys.current
    total = failed = 0
    while True:
        changed = 0
        for digest in list(store.digests()):
            try:
                changed += rewrap(store, digest, target, os.urandom)
            except FileNotFoundError:
                continue
            except CorruptObject as exc:
                failed += 1
                print(f"skipped {digest}: {exc.reason} (run mirror cache verify)", file=err)
        total += changed
        if changed == 0:
            break
        # A server may still be committing fills it started under the old KEK: go again.
        time.sleep(grace)
    print(f"every object is wrapped by KEK {target.id} ({total} re-wrapped)", file=out)
    return 1 if failed else 0


def _retire(config: Config, kek_id: str, out: TextIO, err: TextIO) -> int:
    store = _encrypted(config)
    keys = store.keys
    ring = keys.ring.without(kek_id)  # refuses the current KEK
    only = 0
    for digest in list(store.digests()):
        try:
            only += clear(store, digest, kek_id) == "only"
        except FileNotFoundError:
            continue
    if only:
        print(
            f"mirror: {only} objects are wrapped only by {kek_id}: run mirror keys rotate first",
            file=err,
        )
        return 1
    if isinstance(keys.source, KeyFile):
        keys.source.save(ring)
        print(f"removed KEK {kek_id} from {keys.source.path}", file=out)
    else:
        print(f"no object needs KEK {kek_id}: remove it from {keys.source.describe()}", file=out)
    keys.unregister(kek_id)
    return 0
