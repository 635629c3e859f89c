"""surefoot: resumable, checkpointed deployments of Docker Compose applications."""

__version__ = "0.1.0"
