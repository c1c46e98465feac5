"""The web pages' templates (templates/web/): one Jinja environment, everything escaped."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from newsletter.links import contact_url
from newsletter.templating import environment, render, template_dirs

if TYPE_CHECKING:
    from newsletter.config import Settings


class Pages:
    """Renders the web templates with what every page shows (list name, links, contact)."""

    def __init__(self, settings: Settings):
        from markupsafe import Markup

        from newsletter.subscribers import clean_name

        self.settings = settings
        # An operator's render.templates_dir/web first, then the bundled templates/web.
        self.env = environment(template_dirs(settings, "web"))
        lst = settings.list
        self.list_name = clean_name(lst.name)
        self.contact = clean_name(lst.contact or lst.from_address)
        self.contact_url = contact_url(self.contact)
        css = self.render("style.css.j2")
        self.css = Markup(css)  # our own file, not user input
        #: For the Content-Security-Policy: the one inline <style> the pages have.
        self.css_hash = "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()

    def render(self, template: str, **context: Any) -> str:
        return render(self.env, template, context)

    def page(
        self, template: str, *, title: str, subscribe_url: str, archive_url: str, **context: Any
    ) -> str:
        return self.render(
            template,
            title=title,
            list_name=self.list_name,
            css=self.css,
            contact=self.contact,
            contact_url=self.contact_url,
            subscribe_url=subscribe_url,
            archive_url=archive_url,
            **context,
        )
