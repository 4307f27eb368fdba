"""A reader of TensorFlow 1 checkpoints (the "V2" tensor bundle), without TensorFlow.

A checkpoint ``<prefix>`` is two files:

* ``<prefix>.index``: an immutable sorted key/value table (LevelDB's SSTable layout: data blocks of
  prefix-compressed entries with restart points, an index block, a 48-byte footer ending in a magic
  number).  The empty key holds a ``BundleHeaderProto``; every other key is a variable's name and
  holds a ``BundleEntryProto`` (dtype, shape, shard, offset, size, CRC32C).
* ``<prefix>.data-00000-of-00001``: the tensors' raw little-endian bytes at those offsets.

Every block's CRC32C (masked, as LevelDB writes it) is checked, and every tensor's size against its
shape, so a cut or overwritten file is one :class:`CheckpointError` naming the file.  The tensor
bytes themselves are checked by the caller (:mod:`mattlib.features.musicnn_net` compares the data
file's SHA-256 with the published one: a pure-Python CRC32C over 9 MB would take seconds).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from mattlib.errors import MattError

__all__ = ["CheckpointError", "read_checkpoint", "checkpoint_entries"]

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5  # 1 byte compression type + 4 bytes masked CRC32C after every block

# tensorflow/core/framework/types.proto DataType -> numpy dtype (the ones a checkpoint of float
# models holds)
_DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "<u1", 5: "<i2", 6: "<i1", 9: "<i8", 10: "?", 19: "<f2"}


class CheckpointError(MattError, RuntimeError):
    """A checkpoint file is missing, cut or damaged (the message names the file)."""


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of a protobuf message (varint, fixed and length-delimited)."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, value))
    if pos != len(buf):
        raise ValueError("protobuf message runs past its end")
    return out


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size
    if end + _TRAILER > len(data):
        raise CheckpointError(f"{path}: cut short (a block at byte {offset} runs past the end)")
    block, kind = data[offset:end], data[end]
    (masked,) = struct.unpack_from("<I", data, end + 1)
    if _crc32c(block + bytes([kind])) != _unmask(masked):
        raise CheckpointError(f"{path}: damaged (checksum of the block at byte {offset} differs)")
    if kind != 0:
        raise CheckpointError(f"{path}: compressed blocks (type {kind}) are not supported")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (prefix-compressed keys, restart array at the end)."""
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    out, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        n_value, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        out.append((key, block[pos : pos + n_value]))
        pos += n_value
    return out


def _handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def checkpoint_entries(index_path: str | os.PathLike) -> dict[str, dict]:
    """The tensors a checkpoint's ``.index`` file lists.

    Parameters
    ----------
    index_path : str or Path
        ``<prefix>.index``.

    Returns
    -------
    dict
        Variable name -> ``{"dtype": numpy dtype str, "shape": tuple, "shard": int, "offset": int,
        "size": int}`` (bytes in the data file), in the table's (sorted) order.

    Raises
    ------
    CheckpointError
        The file is missing, cut, damaged or not a tensor bundle.
    """
    path = Path(index_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) < _FOOTER or struct.unpack_from("<Q", data, len(data) - 8)[0] != _MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (no table footer; cut or damaged)")
    try:
        footer = data[-_FOOTER:]
        _, _, pos = _handle(footer, 0)  # the metaindex block (empty in tensor bundles)
        index_offset, index_size, _ = _handle(footer, pos)
        entries: dict[str, dict] = {}
        header_seen = False
        for _, handle in _block_entries(_block(data, index_offset, index_size, path)):
            offset, size, _ = _handle(handle, 0)
            for key, value in _block_entries(_block(data, offset, size, path)):
                if key == b"":
                    header_seen = True  # BundleHeaderProto: one shard, little-endian, version 1
                    continue
                entries[key.decode()] = _bundle_entry(value)
    except CheckpointError:
        raise
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: damaged ({exc})") from None
    if not header_seen:
        raise CheckpointError(f"{path}: no bundle header (not a TensorFlow V2 checkpoint)")
    return entries


def _bundle_entry(value: bytes) -> dict:
    entry = {"dtype": None, "shape": (), "shard": 0, "offset": 0, "size": 0}
    for field, v in _proto_fields(value):
        if field == 1:
            if v not in _DTYPES:
                raise ValueError(f"unsupported tensor dtype enum {v}")
            entry["dtype"] = _DTYPES[v]
        elif field == 2:  # TensorShapeProto: repeated Dim (field 2) {size: field 1}
            dims = []
            for f, dim in _proto_fields(v):
                if f == 2:
                    dims.append(dict(_proto_fields(dim)).get(1, 0))
            entry["shape"] = tuple(int(d) for d in dims)
        elif field == 3:
            entry["shard"] = int(v)
        elif field == 4:
            entry["offset"] = int(v)
        elif field == 5:
            entry["size"] = int(v)
        elif field == 7:
            raise ValueError("partitioned (sliced) variables are not supported")
    if entry["dtype"] is None:
        raise ValueError("an entry without a dtype")
    return entry


def read_checkpoint(prefix: str | os.PathLike, *, names=None) -> dict[str, np.ndarray]:
    """Tensors of a one-shard TF1 checkpoint as numpy arrays.

    Parameters
    ----------
    prefix : str or Path
        The checkpoint prefix: ``<prefix>.index`` and ``<prefix>.data-00000-of-00001`` are read
        (for musicnn's ``MSD_musicnn/`` folder the prefix is the folder with a trailing separator:
        the files are named ``.index`` and ``.data-00000-of-00001``).
    names : iterable of str, optional
        Read only these variables (default: all).

    Returns
    -------
    dict
        Variable name -> array (a copy, in the stored dtype and shape).

    Raises
    ------
    CheckpointError
        A file is missing, cut or damaged, or a requested name is absent.

    Examples
    --------
    >>> from mattlib.features.musicnn_net import checkpoint_prefix
    >>> w = read_checkpoint(checkpoint_prefix("MSD_musicnn"), names=["dense/kernel"])
    >>> w["dense/kernel"].shape
    (1506, 200)
    """
    prefix = str(prefix)
    entries = checkpoint_entries(prefix + ".index")
    wanted = list(entries) if names is None else list(names)
    missing = [n for n in wanted if n not in entries]
    if missing:
        raise CheckpointError(f"{prefix}.index: no variable {missing[0]!r} ({len(missing)} missing)")
    data_path = Path(prefix + ".data-00000-of-00001")
    try:
        data = np.memmap(data_path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{data_path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    out = {}
    for name in wanted:
        e = entries[name]
        if e["shard"] != 0:
            raise CheckpointError(f"{prefix}.index: {name!r} is in shard {e['shard']}; only one shard is read")
        dtype = np.dtype(e["dtype"])
        n = int(np.prod(e["shape"], dtype=np.int64))
        if n * dtype.itemsize != e["size"]:
            raise CheckpointError(f"{prefix}.index: damaged ({name!r}: {e['size']} bytes for shape {e['shape']})")
        if e["offset"] + e["size"] > data.shape[0]:
            raise CheckpointError(f"{data_path}: cut short ({name!r} ends at byte {e['offset'] + e['size']})")
        raw = np.asarray(data[e["offset"] : e["offset"] + e["size"]])
        out[name] = raw.view(dtype).reshape(e["shape"]).copy()
    del data
    return out
