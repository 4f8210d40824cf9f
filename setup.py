"""Build script.

Everything declarative lives in pyproject.toml; this file exists for the optional
compiled extension, which is added here when it can be built.
"""
from setuptools import setup

setup()
