"""The manifests the controller renders (the preparation Job): the package ``controller.templates``.

The directory stays at the top of the repository; ``pyproject.toml`` maps it into the controller's
package, so a pip-installed controller reads the same files through ``importlib.resources``.
"""
