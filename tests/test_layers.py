"""The package's layers, by import: core <- trainer, runtime <- export <- cli/bench/doctor.

Every `import vaegan...` in every module counts, the lazy ones inside functions too: a lazy import
of a higher layer is still a cycle, only a later one.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vaegan"

# layer -> the layers it may import
ALLOWED = {
    "core": {"core"},
    "trainer": {"core", "trainer"},
    "runtime": {"core", "runtime"},
    "export": {"core", "trainer", "runtime", "export"},
    "top": {"core", "trainer", "runtime", "export", "top"},
}


def layer_of(module: str) -> str:
    """vaegan.core.manifest -> core; vaegan.config -> core (torch-free plain data); vaegan.cli -> top."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("core", "config"):
        return "core"
    return parts[1] if parts[1] in ("trainer", "runtime", "export") else "top"


def vaegan_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vaegan"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "vaegan":
            out.append((node.lineno, node.module))
    return out


MODULES = sorted(p for p in PKG.rglob("*.py"))


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(p for p in rel.parts if p != "__init__")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG.parent)))
def test_no_module_imports_a_higher_layer(path):
    here = layer_of(_module(path))
    bad = [
        f"line {line}: {mod} ({layer_of(mod)})"
        for line, mod in vaegan_imports(path)
        if layer_of(mod) not in ALLOWED[here]
    ]
    assert not bad, f"{path.name} is in the {here} layer and imports " + "; ".join(bad)


def test_the_layer_rule_catches_a_violation(tmp_path):
    """The check itself can fail: the runtime importing the exporter, as sampler.py once did."""
    f = tmp_path / "sampler.py"
    f.write_text("def load():\n    from vaegan.export.manifest import Manifest\n")
    ((line, mod),) = vaegan_imports(f)
    assert line == 2 and layer_of(mod) == "export" and "export" not in ALLOWED["runtime"]
