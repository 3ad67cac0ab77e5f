"""The cashier's terminal (ECR) and the self-checkout kiosk: a MAPI client like any merchant's till."""
