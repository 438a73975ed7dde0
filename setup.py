"""Only for the C extension (the machine's hot paths); metadata is in pyproject.toml."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("emulator._native", ["emulator/_native.c"])])
