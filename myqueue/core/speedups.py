"""The package's C extension (``_speedups.c``, built by setup.py), or None where it was not built.

Built wherever a C compiler and the interpreter's headers are (CI, a developer's machine); the
images' build stage has neither, and their services never frame or read records one by one.
Every caller keeps the Python path it speeds up: that path runs where ``native`` is None, frames
and reads whatever the C code leaves to it, and is what the C code is tested against.
"""

from types import ModuleType

native: ModuleType | None
try:
    from . import _speedups as native
except ImportError:
    native = None
