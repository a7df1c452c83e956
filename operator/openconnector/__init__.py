"""OpenConnector Events and Webhooks as a Kubernetes operator."""

__version__ = "0.1.0"
