"""Activations of a model pair: token sources and datasets (``data``), loading a pair (``models``), reading and
splicing a hook point (``sites``), shuffling buffers and disk caches (``buffer``), and a crosscoder bound to its
pair (``diff``).
"""
