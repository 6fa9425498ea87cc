"""Build the native media kernels in native/ as mediagw._native.<name> extensions."""
from Cython.Build import cythonize
from setuptools import Extension, setup

NATIVE_MODULES = ["g711", "mix", "rtpio"]

extensions = [
    Extension(f"mediagw._native.{name}", [f"native/{name}.pyx"], extra_compile_args=["-O3"])
    for name in NATIVE_MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["native", "."],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    ),
)
