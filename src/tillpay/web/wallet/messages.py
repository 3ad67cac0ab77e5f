"""Keep the wallet's translation catalogs in step with its templates.

``python -m tillpay.web.wallet.messages`` extracts every message from the templates and merges it into
each ``locale/<locale>/LC_MESSAGES/wallet.po`` (new messages arrive untranslated, gone ones are dropped);
translators then fill in the ``msgstr`` lines. The tests use :func:`extract` to check nothing is missing.
"""

from __future__ import annotations

import sys

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from tillpay.web.wallet.i18n import DOMAIN, LANGUAGES, po_path
from tillpay.web.wallet.pages import TEMPLATES

_METHODS = [("**.html", "jinja2.ext:babel_extract")]
_OPTIONS = {"**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true", "lstrip_blocks": "true"}}


def extract() -> Catalog:
    """Every message the templates use, as a template catalog."""
    catalog = Catalog(project="tillpay-wallet", domain=DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
        str(TEMPLATES), method_map=_METHODS, options_map=_OPTIONS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def update() -> None:
    """Merge the templates' messages into every catalog."""
    template = extract()
    for locale in LANGUAGES:
        path = po_path(locale)
        if path.exists():
            with path.open("rb") as f:
                catalog = read_po(f, locale=locale, domain=DOMAIN)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            catalog = Catalog(locale=locale, domain=DOMAIN, project="tillpay-wallet")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with path.open("wb") as f:
            write_po(f, catalog, width=110, omit_header=False, sort_output=False, include_previous=False)
        missing = sum(
            1
            for m in catalog
            if (m.id and not m.string) or (isinstance(m.string, tuple) and not all(m.string))
        )
        print(f"{path}: {len(catalog)} messages, {missing} untranslated", file=sys.stderr)


if __name__ == "__main__":
    update()
