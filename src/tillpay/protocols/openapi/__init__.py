"""Alipay Open Platform face-to-face (当面付) dialect: ``/gateway.do`` with ``method=alipay.trade.*``."""
