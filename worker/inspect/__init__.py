"""Bounded readers of model headers and small config files (safetensors, GGUF, Hugging Face JSON).

Pure parsing: every byte arrives through a ``reader.ByteSource`` (a local file here, HTTP range
requests for remote sources), every length and count is bounded before it is used, and every
failure is an ``InvalidWeights`` naming the file.
"""
