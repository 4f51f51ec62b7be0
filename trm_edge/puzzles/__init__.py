"""Puzzle tasks (numpy only): codecs, generators, solvers/validators, augmentations, datasets."""

# Answer length per task in the official datasets; the import of official checkpoints uses it.
TASK_SEQ_LEN = {"sudoku": 81, "maze": 900, "arc": 900}
