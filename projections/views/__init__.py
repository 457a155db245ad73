"""The read models: each module is one view's tables (DDL), handlers, writes and
queries, including the snapshot a websocket topic starts from (`topics`).

`base` holds what every view shares (handler registry, per-event context, row
helpers). A view reads only its own tables while folding; queries may join.
"""
