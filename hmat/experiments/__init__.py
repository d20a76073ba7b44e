"""Experiment helpers used by the book's notebooks (tested like the rest of the library).

Submodules that need torch (``imagenet``, ``pinn``) import it themselves; importing this package
does not.
"""
