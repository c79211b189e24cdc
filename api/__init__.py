"""The public API of ai-models: pydantic models of the three custom resources.

This package is the one definition shared by the controller and the worker; the CRDs in
``crds/`` are generated from it (``python -m api.crdgen``).
"""
