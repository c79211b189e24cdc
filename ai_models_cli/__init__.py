"""``ai-models``: the user's command line (``upload`` into a Model's upload session).

Modules: ``cli`` (arguments, the run), ``kube`` (the only user of the ``kubernetes`` client),
``gateway`` (the upload gateway's HTTP API), ``upload`` (the resumable upload), ``payload`` (a
file, or a directory as a deterministic tar stream), ``progress``, ``status``, ``errors``. It
depends on the ``api`` package only — never on the controller or the worker.
"""
