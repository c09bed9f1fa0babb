"""Hostile files for the bad-file tests."""

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def write_decompression_bomb(path, width: int = 30000, height: int = 30000) -> None:
  """A PNG of a few dozen bytes whose header claims width x height greyscale pixels: what a
  decoder without a size limit would allocate (900 MB at the default) before finding the data
  missing."""
  header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)  # 8-bit grey, no interlace.
  with open(path, 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header)
            + _chunk(b'IDAT', zlib.compress(b'\0' * 64)) + _chunk(b'IEND', b''))
