"""``python -m tillpay.cli``: the same as the ``tillpay`` command."""

from tillpay.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
