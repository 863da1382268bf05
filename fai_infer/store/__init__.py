"""The local catalogue on disk: generations swapped by one rename, checksummed deltas under
a writer lock, structure checks of everything read, and the in-memory state they rebuild.
Layer 3: imports index/, model/, image/ and the base."""
