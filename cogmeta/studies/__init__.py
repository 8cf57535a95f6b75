"""Studies: which runs a paper's experiment needs (presets of the one ``RunConfig``) and their analysis.

A study trains nothing itself; it asks the one pipeline (``cogmeta.training.train``) for its runs.
"""
