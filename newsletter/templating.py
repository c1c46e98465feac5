"""The one Jinja setup of the emails (:mod:`newsletter.render`) and the web pages
(:mod:`newsletter.web.pages`): where templates are found, the environment, and template
errors as one line naming the file.

jinja2 is imported only when a template is rendered (``newsletter --help`` stays light).
"""

from __future__ import annotations

import functools
import pathlib
import traceback
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from newsletter.errors import TemplateError

if TYPE_CHECKING:
    import jinja2

    from newsletter.config import Settings

#: A Jinja filter: its name in templates and the function.
Filter = tuple[str, Callable[..., Any]]


def bundled_templates_dir() -> pathlib.Path:
    """The templates shipped with the program: inside the installed package, else the repo's."""
    from importlib import resources

    packaged = resources.files("newsletter") / "templates"
    if packaged.is_dir() and isinstance(packaged, pathlib.Path):
        return packaged
    return pathlib.Path(__file__).resolve().parents[1] / "templates"


def template_dirs(settings: Settings, subdir: str = "") -> tuple[str, ...]:
    """Where templates are looked up: the operator's ``render.templates_dir`` first, then
    the bundled ones; ``subdir`` of each (the web pages are in ``web``)."""
    roots = [pathlib.Path(settings.render.templates_dir)] if settings.render.templates_dir else []
    return tuple(str(root / subdir) for root in (*roots, bundled_templates_dir()))


@functools.lru_cache(maxsize=8)
def environment(dirs: tuple[str, ...], filters: tuple[Filter, ...] = ()) -> jinja2.Environment:
    """The environment for templates in ``dirs`` (first match wins): ``.html``/``.html.j2``
    autoescaped, undefined names an error, block tags leave no blank lines."""
    import jinja2

    def autoescape(name: str | None) -> bool:
        return bool(name) and name.endswith((".html.j2", ".html"))  # type: ignore[union-attr]

    class Loader(jinja2.FileSystemLoader):
        def get_source(
            self, environment: jinja2.Environment, template: str
        ) -> tuple[str, str, Callable[[], bool]]:
            try:
                return super().get_source(environment, template)
            except UnicodeDecodeError as e:
                where = next(
                    (str(p) for d in dirs if (p := pathlib.Path(d) / template).is_file()),
                    template,
                )
                raise TemplateError(
                    f"{where}: not UTF-8 (byte {e.object[e.start]:#04x} at offset {e.start}); "
                    "save the template as UTF-8"
                ) from None

    env = jinja2.Environment(
        loader=Loader(list(dirs)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(dict(filters))
    return env


def render(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    """Template ``name`` filled with ``context``; a :class:`TemplateError` that names the
    file (and line) for a missing, unreadable or broken template."""
    import jinja2

    dirs = env.loader.searchpath if isinstance(env.loader, jinja2.FileSystemLoader) else []
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as e:
        raise TemplateError(
            f"template {e.name!r} not found in {', '.join(map(str, dirs))}"
        ) from None
    except jinja2.TemplateSyntaxError as e:
        where = e.filename or e.name or name
        raise TemplateError(f"{where}:{e.lineno}: template syntax error: {e.message}") from e
    except jinja2.TemplateError as e:  # UndefinedError and friends, raised while rendering
        where = _template_frame(e, name)
        raise TemplateError(f"{where}: {type(e).__name__}: {e}") from e


def _template_frame(e: BaseException, default: str) -> str:
    """The innermost ``file:line`` inside a template from a rendering traceback."""
    frames = [
        f for f in traceback.extract_tb(e.__traceback__) if f.filename.endswith((".j2", ".css"))
    ]
    if not frames:
        return default
    return f"{frames[-1].filename}:{frames[-1].lineno}"
