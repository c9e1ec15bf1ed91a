"""Reading a trained crosscoder: per-latent norms, cosines and the taxonomy (``norms``), latent activations over
text (``latents``), Latent Scaling (``scaling``), behaviour detectors (``detection``), reconstruction and
splicing evals (``evals``), steering (``steering``), the toy pair's behaviour (``behaviour``), dashboards
(``dashboards``), figures (``figures``) and side-by-side comparison of releases (``comparison``).
"""
