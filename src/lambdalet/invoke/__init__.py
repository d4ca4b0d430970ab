"""Data plane: qualifier -> version, concurrency accounting, placement on warm or new environments."""
