"""Message broker plumbing: the embedded SQLite transport, the queue topology, publishing with confirms."""
