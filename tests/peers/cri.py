"""containerd's CRI plugin and a minimal ``runtime.v1.ImageService`` client: what a kubelet does.

:class:`CriContainerd` is :class:`~tests.peers.containerd.Containerd` with the CRI plugin on,
its registry hosts read from a hosts directory (``registry.config_path``), the streaming
server on an ephemeral 127.0.0.1 port and CNI looked up in private directories.

:class:`CriImageClient` calls ``PullImage`` over grpcio with the request encoded by hand: the
CRI ``api.proto`` is not on PyPI in a maintained package (``kubernetes-cri`` is a 2018
``v1alpha2`` build for an old protobuf runtime) and there is no way to fetch the proto to
compile it here, while the two messages needed are a handful of length-delimited string
fields. The field numbers are those of ``k8s.io/cri-api/pkg/apis/runtime/v1/api.proto``::

    message PullImageRequest  { ImageSpec image = 1; AuthConfig auth = 2; ... }
    message ImageSpec         { string image = 1; ... }
    message AuthConfig        { string username = 1; string password = 2; string auth = 3;
                                string server_address = 4; ... }
    message PullImageResponse { string image_ref = 1; }

An imagePullSecret reaches the runtime as that ``AuthConfig`` with ``server_address`` set to
the secret's registry key; containerd 1.6 sends the credentials only to a host equal to it
(or to every host when it is empty), so a secret keyed by the origin is not sent to a mirror.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from tests.peers.containerd import Containerd

PULL_IMAGE = "/runtime.v1.ImageService/PullImage"
# An empty VersionRequest answers once the CRI service is initialised.
VERSION = "/runtime.v1.RuntimeService/Version"
PULL_TIMEOUT = 120.0
CRI_READY_TIMEOUT = 20.0
_LENGTH_DELIMITED = 2


@dataclass(frozen=True)
class RegistryAuth:
    """The CRI ``AuthConfig`` a kubelet builds from an imagePullSecret entry."""

    username: str
    password: str
    # The secret's registry key (``.dockerconfigjson`` "auths" key); "" sends it anywhere.
    server_address: str = ""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (a string or an embedded message)."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _string_fields(*values: tuple[int, str]) -> bytes:
    # proto3 leaves empty strings out of the encoding.
    return b"".join(_field(n, v.encode()) for n, v in values if v)


def encode_pull_image_request(image: str, auth: RegistryAuth | None = None) -> bytes:
    """The wire bytes of a ``PullImageRequest`` for ``image`` with optional credentials."""
    body = _field(1, _string_fields((1, image)))
    if auth is not None:
        credentials = _string_fields(
            (1, auth.username), (2, auth.password), (4, auth.server_address)
        )
        body += _field(2, credentials)
    return body


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise ValueError("truncated varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, offset


def decode_pull_image_response(data: bytes) -> str:
    """``image_ref`` of a ``PullImageResponse``; raises ``ValueError`` on malformed bytes."""
    offset, image_ref = 0, ""
    while offset < len(data):
        key, offset = _read_varint(data, offset)
        if key & 7 != _LENGTH_DELIMITED:
            raise ValueError(f"unexpected wire type {key & 7} in PullImageResponse")
        length, offset = _read_varint(data, offset)
        payload, offset = data[offset : offset + length], offset + length
        if len(payload) != length:
            raise ValueError("truncated PullImageResponse")
        if key >> 3 == 1:
            image_ref = payload.decode()
    return image_ref


class CriContainerd(Containerd):
    """A private ``containerd`` with the CRI plugin, pulling through ``hosts_dir``."""

    def __init__(self, base_dir: Path, hosts_dir: Path) -> None:
        super().__init__(base_dir, namespace="k8s.io")
        self.hosts_dir = hosts_dir

    def config(self) -> str:
        """The daemon config: private root/state/sockets, CRI on with ``config_path``."""
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return (
            "version = 2\n"
            f'root = "{self.base_dir / "root"}"\n'
            f'state = "{self.base_dir / "state"}"\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
            '[debug]\n  address = ""\n'
            '[metrics]\n  address = ""\n'
            f"[{cri}]\n"
            '  stream_server_address = "127.0.0.1"\n'
            '  stream_server_port = "0"\n'
            f"[{cri}.cni]\n"
            f'  bin_dir = "{self.base_dir / "cni-bin"}"\n'
            f'  conf_dir = "{self.base_dir / "cni-conf"}"\n'
            f"[{cri}.registry]\n"
            f'  config_path = "{self.hosts_dir}"\n'
        )

    async def start(self) -> None:
        """Start, then wait until the CRI service answers ``Version``; raises
        :class:`~tests.peers.containerd.ContainerdStartError` when it never does."""
        await super().start()
        deadline = time.monotonic() + CRI_READY_TIMEOUT
        async with grpc.aio.insecure_channel(f"unix://{self.socket}") as channel:
            version = channel.unary_unary(VERSION)
            while True:
                try:
                    await version(b"", timeout=2.0)
                    return
                except grpc.aio.AioRpcError as error:
                    if time.monotonic() > deadline:
                        self._fail(f"CRI plugin not serving: {error.details()}")
                await asyncio.sleep(0.1)

    def start_sync(self) -> None:
        """Blocking :meth:`start`."""
        asyncio.run(self.start())


class CriImageClient:
    """``runtime.v1.ImageService`` over the daemon's gRPC socket (grpcio's asyncio API)."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> str:
        """Pull ``image`` as a kubelet would; returns the image ref (``sha256:...``) or raises
        ``grpc.aio.AioRpcError`` with containerd's message."""
        async with grpc.aio.insecure_channel(f"unix://{self.socket}") as channel:
            call = channel.unary_unary(PULL_IMAGE)
            response = await call(encode_pull_image_request(image, auth), timeout=PULL_TIMEOUT)
        assert isinstance(response, bytes)
        return decode_pull_image_response(response)
