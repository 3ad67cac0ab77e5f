"""Tillpay: a self-hostable in-store mobile payment system."""

__version__ = "0.1.0"
