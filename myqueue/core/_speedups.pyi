# The C extension myqueue/core/_speedups.c (built by setup.py; absent where no compiler was found).
from collections.abc import Callable, Sequence

def encode(
    values: list[bytes],
    timestamps: list[int],
    keys: Sequence[object] | None,
    headers: Sequence[object] | None,
    attributes: int,
    application: bool,
    max_value: int,
    max_key: int,
    max_headers: int,
    max_name: int,
    crc: Callable[[bytes], int],
    /,
) -> bytes | None: ...
def records(
    cls: type,
    topic: str,
    partition: str,
    first_offset: int,
    start: int,
    stop: int,
    values: list[bytes],
    keys: list[bytes | None] | None,
    header_lists: list[tuple[tuple[str, bytes], ...]] | None,
    header_names: tuple[str, ...] | None,
    header_columns: tuple[list[bytes] | bytes, ...] | None,
    stamps: object,
    kind: object,
    /,
) -> list: ...
def cut(data: bytes, at: int, sizes: object, keys: bool, /) -> list: ...
def columns(data: bytes, at: int, sizes: object, each: int, /) -> tuple[list[bytes] | bytes, ...]: ...
