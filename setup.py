"""Build hook for the optional compiled parts (everything else is pyproject.toml).

``optional=True``: where no C compiler, Python headers or OpenSSL headers exist, the build
skips that extension with a warning and jangbu runs the pure-Python code, which gives the
same bytes (consensus/canonical.py, node/state_tree.py) or the same verdicts
(node/sigcheck.py). Separate modules, so a machine without OpenSSL's headers still gets
the others.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("consensus._speedups", ["consensus/_speedups.c"], optional=True,
                  extra_compile_args=["-O2"]),
        Extension("node._tree_speedups", ["node/_tree_speedups.c"], optional=True,
                  extra_compile_args=["-O2"], libraries=["crypto"]),
        # Needs nothing beyond the C compiler: it calls the libsodium PyNaCl loaded.
        Extension("node._sigcheck", ["node/_sigcheck.c"], optional=True,
                  extra_compile_args=["-O2"], libraries=["dl"]),
    ],
)
