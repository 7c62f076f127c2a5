"""The one C extension, myqueue/core/_speedups.c (everything else is in pyproject.toml).

``optional=True``: where no C compiler or no Python headers are found, the package installs
without it, and the client frames and reads every batch in Python (myqueue/core/speedups.py).
The images build from pyproject.toml alone (their Dockerfiles copy no setup.py): their services
never frame or read records one by one, so they carry no compiled code of ours.
An editable install builds it in place: after editing the C file, run the install again.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "myqueue.core._speedups",
            ["myqueue/core/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
