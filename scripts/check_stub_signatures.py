"""Check the signatures in ``cascade_routing/_core.pyi`` against the compiled module.

``mypy.stubtest`` checks that the stub and the module define the same names, but it cannot
read the parameters of pybind11 functions (they have no ``__text_signature__``). pybind11 does
write every signature as the first line of the docstring; this script parses that line and
the stub and compares, function by function: parameter names and order, which are
keyword-only, which have defaults (and the default values, where the stub spells them out),
the kind of each scalar parameter (bool / int / float) and of the result (tuple / array /
int). Exit status 1 and one line per mismatch if they differ.

    python scripts/check_stub_signatures.py     (cascade_routing must be importable)
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

#: Runtime annotations (pybind11's names) and the stub annotations they allow.
_SCALARS = {
    "bool": {"bool"},
    "typing.SupportsInt | typing.SupportsIndex": {"int"},
    "typing.SupportsFloat | typing.SupportsIndex": {"float"},
    "int": {"int"},
    "float": {"float"},
}
_RESULTS = {"tuple": "tuple", "numpy.ndarray": "NDArray", "int": "int", "float": "float"}


def _function(source: str) -> ast.FunctionDef:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    return node


def _runtime_signature(doc: str, name: str) -> ast.FunctionDef:
    first = doc.splitlines()[0]
    if not first.startswith(name + "("):
        raise ValueError(f"{name}: the docstring does not start with its signature: {first!r}")
    params, _, result = first.rpartition(" -> ")
    return _function(f"def {params} -> {result}: ...")


def _outer(node: ast.expr | None) -> str:
    if node is None:
        return "?"
    if isinstance(node, ast.Subscript):
        node = node.value
    return ast.unparse(node)


def compare(name: str, stub: ast.FunctionDef, runtime: ast.FunctionDef) -> list[str]:
    errors: list[str] = []
    s, r = stub.args, runtime.args
    s_pos = [a.arg for a in s.posonlyargs + s.args]
    r_pos = [a.arg for a in r.posonlyargs + r.args]
    if s_pos != r_pos:
        errors.append(f"{name}: positional parameters differ: stub {s_pos}, runtime {r_pos}")
    s_kw = [a.arg for a in s.kwonlyargs]
    r_kw = [a.arg for a in r.kwonlyargs]
    if s_kw != r_kw:
        errors.append(f"{name}: keyword-only parameters differ: stub {s_kw}, runtime {r_kw}")
    if errors:
        return errors

    def defaults(args: ast.arguments) -> dict[str, ast.expr]:
        pos = args.posonlyargs + args.args
        out = {a.arg: d for a, d in zip(pos[len(pos) - len(args.defaults) :], args.defaults)}
        out.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults) if d})
        return out

    s_def, r_def = defaults(s), defaults(r)
    if set(s_def) != set(r_def):
        errors.append(
            f"{name}: parameters with defaults differ: stub {sorted(s_def)}, "
            f"runtime {sorted(r_def)}"
        )
    for arg, d in s_def.items():
        if arg in r_def and not (isinstance(d, ast.Constant) and d.value is Ellipsis):
            if ast.unparse(d) != ast.unparse(r_def[arg]):
                errors.append(
                    f"{name}: default of {arg}: stub {ast.unparse(d)}, runtime "
                    f"{ast.unparse(r_def[arg])}"
                )
    stub_ann = {a.arg: a.annotation for a in s.posonlyargs + s.args + s.kwonlyargs}
    for a in r.posonlyargs + r.args + r.kwonlyargs:
        if a.annotation is None:
            continue
        allowed = _SCALARS.get(ast.unparse(a.annotation))
        got = ast.unparse(stub_ann[a.arg]) if stub_ann[a.arg] is not None else "?"
        if allowed is not None and got not in allowed:
            errors.append(
                f"{name}: {a.arg} is {ast.unparse(a.annotation)} at runtime, but {got} in the stub"
            )
    want = _RESULTS.get(_outer(runtime.returns))
    if want is not None and _outer(stub.returns) != want:
        errors.append(
            f"{name}: returns {_outer(runtime.returns)} at runtime, but "
            f"{_outer(stub.returns)} in the stub"
        )
    return errors


def main(module_name: str = "cascade_routing._core") -> int:
    module = importlib.import_module(module_name)
    stub_path = Path(module.__file__ or "").with_name(module_name.rpartition(".")[2] + ".pyi")
    tree = ast.parse(stub_path.read_text(encoding="utf-8"))
    errors: list[str] = []
    checked = 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        runtime = getattr(module, node.name, None)
        if runtime is None:
            errors.append(f"{node.name}: in the stub, not in the module")
            continue
        try:
            sig = _runtime_signature(runtime.__doc__ or "", node.name)
        except (ValueError, SyntaxError) as exc:
            errors.append(str(exc))
            continue
        errors += compare(node.name, node, sig)
        checked += 1
    for line in errors:
        print(f"{stub_path}: {line}")
    print(
        f"{checked} signatures checked against {module_name}: "
        f"{'OK' if not errors else f'{len(errors)} mismatch(es)'}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
