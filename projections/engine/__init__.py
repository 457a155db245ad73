"""The engine: what keeps the views current.

`Runner` (engine.runner) reads the log in pages (`pages`, `fastio`), folds each
event into a shared aggregate cache (`aggregates`), hands it to the views and
writes every batch in one transaction (`writer`, `writes`), served by small
collaborators: the batcher, the flusher, the rebuild hand-over and the dead
letters. `tables` creates what a runner needs; `ops` is status, rebuild, retry.
"""
