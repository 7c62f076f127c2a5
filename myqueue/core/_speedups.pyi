# The C extension myqueue/core/_speedups.c (built by setup.py; absent where no compiler was found).
from collections.abc import Callable, Sequence

def encode(
    values: list[bytes],
    timestamps: list[int],
    keys: Sequence[object] | None,
    headers: Sequence[object] | None,
    attributes: int,
    str_names: bool,
    max_key: int,
    max_headers: int,
    max_name: int,
    crc: Callable[[bytes], int],
    /,
) -> bytes | None: ...
