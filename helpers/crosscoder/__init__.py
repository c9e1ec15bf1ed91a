"""The crosscoder itself: its config (``config``), the sparse TopK / BatchTopK step (``sparse_step``), the
module with its losses (``model``), its files in our and the peers' formats (``checkpoints``), and the registered
releases on the Hub or in the package (``releases``).
"""
