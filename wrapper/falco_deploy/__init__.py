"""falco-deploy: put Falco on a fleet of Docker hosts and keep its detection rules right."""

__version__ = "0.1.0"
