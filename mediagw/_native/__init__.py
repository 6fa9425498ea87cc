"""Compiled media kernels built from native/*.pyx (see setup.py); each has a numpy reference in mediagw."""
