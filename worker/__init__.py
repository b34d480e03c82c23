"""recall-worker: a queue-driven moderation worker for Tencent Cloud Chat."""

__version__ = "0.1.0"
