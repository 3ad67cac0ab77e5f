"""Antom (AMS) in-store dialect: ``POST /ams/api/v1/payments/*`` with header signatures."""
