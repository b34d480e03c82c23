"""Report intake: the signed HTTP front door that turns user reports into moderation jobs."""
