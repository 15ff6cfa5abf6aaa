"""itsm-bridge: keeps responders' incident tools and the service desk in step, with an auditable trail."""

__version__ = "0.1.0"
