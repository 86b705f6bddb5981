"""Read IDX files (the MNIST container format), raw or gzipped, with magic, shape and md5 checks."""
from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import UserError

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_UBYTE = 0x08


def read_bytes(path: Path) -> bytes:
    """The file's uncompressed content; gzip is recognised by its magic bytes, not its name."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            return gzip.decompress(raw)
        return raw
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({type(e).__name__}: {e}); the file is truncated or corrupt, "
                        "delete it and put a good copy there (or let mnistbench download it)") from None


def parse_idx(content: bytes, *, ndim: int, name: str = "IDX data") -> np.ndarray:
    """Parse IDX `content` with exactly `ndim` dimensions of unsigned bytes into an array."""
    if len(content) < 4:
        raise UserError(f"{name}: only {len(content)} bytes, too short for an IDX header; the file is truncated")
    zero, dtype, dims = struct.unpack(">HBB", content[:4])
    if zero != 0 or dtype != _UBYTE or dims != ndim:
        raise UserError(f"{name}: bad IDX magic {content[:4].hex()} (expected 000008{ndim:02x}); "
                        "this is not the right MNIST-format file")
    if len(content) < 4 + 4 * ndim:
        raise UserError(f"{name}: only {len(content)} bytes, too short for an IDX header; the file is truncated")
    shape = struct.unpack(f">{ndim}I", content[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(content) != expected:
        raise UserError(f"{name}: {len(content)} bytes but its header {shape} needs {expected}; "
                        "the file is truncated or corrupt")
    return np.frombuffer(content, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def md5(content: bytes) -> str:
    """Hex md5 of `content`."""
    return hashlib.md5(content).hexdigest()


def load_idx(path: Path, *, ndim: int, expected_md5: str | None = None) -> np.ndarray:
    """Read, verify (md5 of the uncompressed content, when given) and parse one IDX file."""
    content = read_bytes(path)
    if expected_md5 is not None and md5(content) != expected_md5:
        raise UserError(f"{path}: content md5 {md5(content)} does not match the expected {expected_md5}; "
                        "the file is corrupt or from another data set: delete it and fetch it again")
    return parse_idx(content, ndim=ndim, name=str(path))
