"""Build hook for the optional compiled canonical encoder (everything else is pyproject.toml).

``optional=True``: where no C compiler or Python headers exist, the build skips the
extension with a warning and jangbu runs on the pure-Python encoder, which gives the same
bytes (consensus/canonical.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("consensus._speedups", ["consensus/_speedups.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
