"""What every layer stands on: errors, options and their defaults, files, the artifact layout.

Nothing here imports TVM when it is imported, so the model stage and a bare deploy host can use it.
"""
