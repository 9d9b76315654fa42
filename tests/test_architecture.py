"""The package's layering, checked from the source: the delivery package (what the worker runs)
never reaches into the web side, the admin's reports or Flask's request objects, so the worker
can send without a request and the web can change without touching delivery."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lamplight_mail"
FORBIDDEN_FOR_DELIVERY = ("lamplight_mail.web", "lamplight_mail.reporting")
REQUEST_OBJECTS = {"request", "session", "g", "flash", "redirect", "url_for", "render_template"}


def _imports(path: Path) -> list[tuple[str, set[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, {alias.name for alias in node.names}))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, set()) for alias in node.names)
    return found


DELIVERY_MODULES = sorted((PACKAGE / "delivery").rglob("*.py"))


@pytest.mark.parametrize("path", DELIVERY_MODULES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_delivery_imports_neither_the_web_nor_reports_nor_request_objects(path: Path) -> None:
    for module, names in _imports(path):
        assert not module.startswith(FORBIDDEN_FOR_DELIVERY), f"{path.name} imports {module}"
        if module == "flask":
            assert not names & REQUEST_OBJECTS, f"{path.name} imports {names & REQUEST_OBJECTS}"


def test_delivery_does_not_reach_the_web_through_what_it_imports() -> None:
    """Following delivery's imports inside the package never arrives at web/ or reporting/."""
    seen: set[str] = set()
    pending = [
        "lamplight_mail." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in DELIVERY_MODULES
    ]
    while pending:
        module = pending.pop().removesuffix(".__init__")
        # The package root is the app factory, which knows every part by design.
        if module in seen or module == "lamplight_mail":
            continue
        seen.add(module)
        assert not module.startswith(FORBIDDEN_FOR_DELIVERY), f"delivery reaches {module}"
        relative = module.removeprefix("lamplight_mail").strip(".").replace(".", "/")
        candidates = [PACKAGE / f"{relative}.py", PACKAGE / relative / "__init__.py"]
        source = next((c for c in candidates if c.is_file()), None)
        if source is None:
            continue
        for imported, names in _imports(source):
            if not imported.startswith("lamplight_mail"):
                continue
            pending.append(imported)
            # `from lamplight_mail.x import y` may name a submodule y.
            pending.extend(f"{imported}.{name}" for name in names)
    assert "lamplight_mail.delivery.job" in seen  # the walk really covered delivery


def test_the_readme_module_map_lists_every_module() -> None:
    """A newcomer reads the map first: a module missing from it is a module nobody finds."""
    readme = (PACKAGE.parent / "README.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.relative_to(PACKAGE).parts
        and f"`{path.relative_to(PACKAGE)}`" not in readme
    ]
    assert not missing, f"add these to README's module map: {missing}"
