"""Only for the C extension (the instruction clock's hook); metadata is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("emulator._icount", ["emulator/_icount.c"])])
