"""Only for the C extensions (the hot paths); metadata is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("vmgames.emulator._native", ["emulator/_native.c"]),
                   Extension("vmgames.tools._tracewriter", ["tools/_tracewriter.c"])])
