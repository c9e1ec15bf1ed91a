"""Training a crosscoder: the trainer with its schedule and checkpoints (``trainer``), the run folder that owns
them (``run_folder``), the wiring from a registered pair to a buffer and a crosscoder (``recipes``), the command
line for one process or torchrun (``launch``), and the GPU memory plan (``gpu_plan``).
"""
