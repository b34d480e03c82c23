"""Builds the optional compiled hot paths (``rules/_speedups.pyx``); everything else is in pyproject.toml.

Where no C compiler is present the extension's build fails quietly (``optional``) and the package runs the
pure-Python twins of those functions instead (``rules.page.COMPILED`` says which).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [Extension("rules._speedups", ["rules/_speedups.pyx"])], compiler_directives={"language_level": "3"}
)
for extension in extensions:
    extension.optional = True  # cythonize() does not carry it over from the Extension it is given

setup(ext_modules=extensions)
