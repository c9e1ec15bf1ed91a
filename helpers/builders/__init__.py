"""Builders of what ships with the package or rehearses the Hub offline: the toy pair and the toy organisms
(``toy_pair``), the Gemma-2-2B stand-ins (``rehearsal_gemma``), the own Llama-style pair (``rehearsal_llama``),
and the offline Hugging Face home that holds them under the real ids (``rehearsal``).

Only scripts, tests and the rebuild commands import from here; nothing below does.
"""
