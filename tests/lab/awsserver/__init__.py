"""The lab's AWS stand-in: moto in-process, plus what AWS does and moto lacks.

See tests/lab/README.md for the interface; `python -m awsserver.server --help` for the entry.
"""
