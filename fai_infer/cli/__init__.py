"""The ``fai`` command line. Top layer: imports anything in the runtime below it."""
