"""Layer format converters: pure stream-in, file-out transformations, no network."""
