"""hmatbook: the code of the hmat companion book (data layer, experiments, verdicts, ledger,
provenance, figures). Installed editable from the checkout (``pip install -e book``, done by
``nox``); it reads the repository's ``data/`` folder (:mod:`hmatbook.paths`) and is never part of
the ``hmat`` wheel.

Submodules that need torch (``imagenet``, ``pinn``, ``compression``, ``digits``) import it
themselves; importing this package does not.
"""
