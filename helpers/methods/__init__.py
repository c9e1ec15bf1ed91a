"""Diffing methods beside the crosscoder: per-token KL (``token_divergence``), the Activation Difference Lens
(``difference_lens``), the diff-SAE (``diff_sae``), and the scoreboard that runs them all on the toy organisms
(``scoreboard``).
"""
