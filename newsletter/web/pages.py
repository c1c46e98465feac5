"""The web pages' templates (templates/web/): one Jinja environment, everything escaped."""

from __future__ import annotations

import base64
import functools
import hashlib
import pathlib
from typing import TYPE_CHECKING, Any

from newsletter.errors import TemplateError

if TYPE_CHECKING:
    import jinja2

    from newsletter.config import Settings


def template_dirs(settings: Settings) -> tuple[str, ...]:
    """An operator's ``render.templates_dir``/web first, then the bundled templates/web."""
    from newsletter.render import bundled_templates_dir

    dirs = []
    if settings.render.templates_dir:
        dirs.append(str(pathlib.Path(settings.render.templates_dir) / "web"))
    return (*dirs, str(bundled_templates_dir() / "web"))


@functools.lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> jinja2.Environment:
    import jinja2

    def autoescape(name: str | None) -> bool:
        return bool(name) and name.endswith((".html.j2", ".html"))  # type: ignore[union-attr]

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(dirs)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class Pages:
    """Renders the web templates with what every page shows (list name, links, contact)."""

    def __init__(self, settings: Settings):
        from markupsafe import Markup

        from newsletter.subscribers import clean_name

        self.settings = settings
        self.env = _environment(template_dirs(settings))
        lst = settings.list
        self.list_name = clean_name(lst.name)
        contact = clean_name(lst.contact or lst.from_address)
        if contact.startswith(("http://", "https://", "mailto:")):
            contact_url = contact
        else:
            contact_url = "mailto:" + contact if "@" in contact else ""
        self.contact, self.contact_url = contact, contact_url
        css = self.render("style.css.j2")
        self.css = Markup(css)  # our own file, not user input
        #: For the Content-Security-Policy: the one inline <style> the pages have.
        self.css_hash = "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()

    def render(self, template: str, **context: Any) -> str:
        import jinja2

        try:
            return self.env.get_template(template).render(context)
        except jinja2.TemplateNotFound as e:
            raise TemplateError(f"web template {e.name!r} not found") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{e.filename or template}:{e.lineno}: {e.message}") from e

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
