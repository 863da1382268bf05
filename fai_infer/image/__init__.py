"""Photos in: bounded header reads, hostile-input decoding, and the one preprocessing path.

Layer 1 of the runtime: imports only the base modules (errors, safe_files)."""
