"""Writes ids_270_compat.json: identifiers computed by experimaestro 2.7.0 for the 2.x configuration
API that touches identifiers (partial identifiers, generics, field options, Annotated, Identifier).

Run it with a Python that has experimaestro==2.7.0 installed, OUTSIDE this checkout (so that it
imports 2.7.0, not ours), e.g.::

    cd /tmp && /tmp/xpm270/bin/python /path/to/tests/data/make_ids_270_compat.py /path/to/out.json

Our tests never import 2.7.0: they read the JSON this writes (tests/test_identifier_compat_2x.py).
Each case's ``source`` runs in a fresh module named ``pbids`` (as for ids_270.json). Kinds:
``id`` evaluates ``expr`` and stores its identifier; ``partial`` stores the identifier of ``expr``
for the partial ``partial`` (an expression); ``path`` submits ``expr`` in a dry-run experiment whose
workspace is a new folder and stores, as ``relative_path``, ``path`` (an expression over ``t``,
the submitted task) relative
to the workspace.
"""

from __future__ import annotations

import json
import sys
import tempfile
import types
import warnings
from pathlib import Path

PRELUDE = """\
from experimaestro import Config, Task, InstanceConfig, Param, Meta, Constant, field, setmeta
from experimaestro import partial, param_group, Annotated, Identifier, PathGenerator, help
from experimaestro import pathgenerator
from typing import Generic, TypeVar, List, Dict, Optional, Union
from pathlib import Path
"""

LEARN = """\
iter_group = param_group("iter")
model_group = param_group("model")
class Sub(Config):
    a: Param[int] = field(groups=[iter_group])
    b: Param[int]
class Learn(Task):
    checkpoints = partial(exclude_groups=[iter_group])
    models = partial(exclude_all=True, include_groups=[model_group])
    nogroup = partial(exclude_no_group=True)
    both = partial(exclude_groups=[iter_group, model_group], include_groups=[iter_group])
    max_iter: Param[int] = field(groups=[iter_group])
    lr: Param[float]
    size: Param[int] = field(default=3, groups=[model_group])
    sub: Param[Optional[Sub]] = None
    label: Meta[str] = field(default="x", groups=[model_group])
    ck: Meta[Path] = field(default_factory=PathGenerator("checkpoint", partial=checkpoints))
"""

GENERIC = """\
T = TypeVar("T")
class Holder(Config, Generic[T]):
    x: Param[T]
class Pair(Config, Generic[T]):
    x: Param[T]
    y: Param[T]
class Base(Config):
    pass
class Child(Base):
    v: Param[int] = field(default=1)
class Outer(Config, Generic[T]):
    h: Param[Holder[T]]
    p: Param[Pair[T]]
class IntHolder(Holder[int]):
    pass
class UseInt(Config):
    h: Param[Holder[int]]
"""

CASES: list[dict] = []


def case(name: str, source: str, expr: str, kind: str = "id", **extra: str) -> None:
    CASES.append({"name": name, "kind": kind, "source": source, "expr": expr, **extra})


# --- partial identifiers -----------------------------------------------------------------------
for n, (expr, p) in {
    "learn_full_iter1": ("Learn.C(max_iter=1, lr=0.1)", None),
    "learn_full_iter2": ("Learn.C(max_iter=2, lr=0.1)", None),
    "learn_checkpoints_iter1": ("Learn.C(max_iter=1, lr=0.1)", "Learn.checkpoints"),
    "learn_checkpoints_iter2": ("Learn.C(max_iter=2, lr=0.1)", "Learn.checkpoints"),
    "learn_checkpoints_lr2": ("Learn.C(max_iter=1, lr=0.2)", "Learn.checkpoints"),
    "learn_checkpoints_size4": ("Learn.C(max_iter=1, lr=0.1, size=4)", "Learn.checkpoints"),
    "learn_checkpoints_sub": (
        "Learn.C(max_iter=1, lr=0.1, sub=Sub.C(a=1, b=2))", "Learn.checkpoints"),
    "learn_checkpoints_sub_a3": (
        "Learn.C(max_iter=1, lr=0.1, sub=Sub.C(a=3, b=2))", "Learn.checkpoints"),
    "learn_models": ("Learn.C(max_iter=1, lr=0.1)", "Learn.models"),
    "learn_models_iter2_lr2": ("Learn.C(max_iter=2, lr=0.2)", "Learn.models"),
    "learn_models_size4": ("Learn.C(max_iter=1, lr=0.1, size=4)", "Learn.models"),
    "learn_nogroup": ("Learn.C(max_iter=1, lr=0.1)", "Learn.nogroup"),
    "learn_nogroup_lr2": ("Learn.C(max_iter=1, lr=0.2)", "Learn.nogroup"),
    "learn_nogroup_iter2": ("Learn.C(max_iter=2, lr=0.1)", "Learn.nogroup"),
    "learn_both": ("Learn.C(max_iter=1, lr=0.1, size=5)", "Learn.both"),
    "learn_both_iter2": ("Learn.C(max_iter=2, lr=0.1, size=6)", "Learn.both"),
    "learn_inline_partial": ("Learn.C(max_iter=1, lr=0.1)", "partial()"),
}.items():
    if p is None:
        case(f"partial_{n}", LEARN, expr)
    else:
        case(f"partial_{n}", LEARN, expr, kind="partial", partial=p)

case("partial_path_iter5", LEARN, "Learn.C(max_iter=5, lr=0.1)", kind="path", path="t.ck")
case("partial_path_iter6", LEARN, "Learn.C(max_iter=6, lr=0.1)", kind="path", path="t.ck")
case("partial_path_lr3", LEARN, "Learn.C(max_iter=5, lr=0.3)", kind="path", path="t.ck")
case(
    "partial_generated_in_job",
    "class G(Task):\n    n: Param[int]\n    out: Meta[Path] = field(default_factory=PathGenerator())\n",
    "G.C(n=1)",
    kind="path",
    path="t.out",
)
case(
    "partial_subclass_declares_none",
    LEARN + "class MoreLearn(Learn):\n    extra: Param[int] = field(default=1)\n",
    "MoreLearn.C(max_iter=5, lr=0.1, extra=2)",
    kind="path",
    path="t.ck",
)
case(
    "partial_param_group_in_sub_task_output_free",
    "g = param_group('g')\nclass A(Config):\n    x: Param[int] = field(groups=[g])\n"
    "    y: Param[int] = field(groups=[g])\n",
    "A.C(x=1, y=2)",
    kind="partial",
    partial="partial(exclude_groups=[g])",
)
case(
    "partial_groups_field_default_included",
    "g = param_group('g')\nclass A(Config):\n    x: Param[int] = field(default=1, groups=[g])\n"
    "    y: Param[int]\n",
    "A.C(y=2)",
)

# --- generics ----------------------------------------------------------------------------------
case("generic_int", GENERIC, "Holder.C(x=1)")
case("generic_str", GENERIC, "Holder.C(x='a')")
case("generic_config", GENERIC, "Holder.C(x=Child.C(v=2))")
case("generic_pair_widened", GENERIC, "Pair.C(x=Child.C(), y=Base.C())")
case("generic_outer", GENERIC, "Outer.C(h=Holder.C(x=1), p=Pair.C(x=2, y=3))")
case("generic_subscripted_class", GENERIC, "IntHolder.C(x=4)")
case("generic_use_int", GENERIC, "UseInt.C(h=IntHolder.C(x=5))")
case(
    "generic_bound",
    "class B(Config):\n    pass\nclass BB(B):\n    pass\nU = TypeVar('U', bound=B)\n"
    "class H(Config, Generic[U]):\n    x: Param[U]\n",
    "H.C(x=BB.C())",
)
case(
    "generic_bound_subscripted_param",
    GENERIC + "class UsesHolder(Config):\n    h: Param[Holder[Base]]\n",
    "UsesHolder.C(h=Holder.C(x=Child.C()))",
)

# --- field options -----------------------------------------------------------------------------
case(
    "field_overrides_default",
    "class A(Config):\n    x: Param[int] = field(default=1)\n"
    "class B(A):\n    x: Param[int] = field(default=2, overrides=True)\n",
    "B.C()",
)
case(
    "field_overrides_default_given_base_default",
    "class A(Config):\n    x: Param[int] = field(default=1)\n"
    "class B(A):\n    x: Param[int] = field(default=2, ignore_default=True, overrides=True)\n",
    "B.C(x=2)",
)
case(
    "field_overrides_narrower_config",
    "class M(Config):\n    pass\nclass MM(M):\n    k: Param[int] = field(default=1)\n"
    "class A(Config):\n    m: Param[M]\nclass B(A):\n    m: Param[MM] = field(overrides=True)\n",
    "B.C(m=MM.C(k=3))",
)
case(
    "field_overrides_without_flag",
    "class A(Config):\n    x: Param[int] = field(default=1)\n"
    "class B(A):\n    x: Param[int] = field(default=5)\n",
    "B.C()",
)
case(
    "field_ignore_generated",
    "class M(Config):\n    p: Meta[Path] = field(default_factory=PathGenerator('m.pt'))\n"
    "    n: Param[int]\n"
    "class A(Config):\n    m: Param[M] = field(ignore_generated=True)\n",
    "A.C(m=M.C(n=1))",
)
case(
    "field_ignore_default_legacy_value",
    "class A(Config):\n    x: Param[float] = field(ignore_default=0.5)\n",
    "A.C(x=0.5)",
)
case(
    "field_ignore_default_legacy_other",
    "class A(Config):\n    x: Param[float] = field(ignore_default=0.5)\n",
    "A.C(x=0.25)",
)

# --- meta configurations in a container parameter with an ignored default ------------------------
META = (
    "class M(Config):\n    x: Param[int]\n"
    "class D(Config):\n    d: Param[Dict[str, M]] = field(default={}, ignore_default=True)\n"
    "class L(Config):\n    xs: Param[List[M]] = field(default=[], ignore_default=True)\n"
)
case("meta_in_default_dict_only_meta", META, "D.C(d={'b': setmeta(M.C(x=2), True)})")
case("meta_in_default_dict_empty", META, "D.C(d={})")
case("meta_in_default_dict_mixed", META, "D.C(d={'a': M.C(x=1), 'b': setmeta(M.C(x=2), True)})")
case("meta_in_default_list_only_meta", META, "L.C(xs=[setmeta(M.C(x=2), True)])")
case("meta_in_default_list_mixed", META, "L.C(xs=[M.C(x=1), setmeta(M.C(x=2), True)])")

# --- Annotated ---------------------------------------------------------------------------------
case("annotated_help_is_param", "class A(Config):\n    x: Annotated[int, help('the x')]\n", "A.C(x=1)")
case(
    "annotated_help_in_param",
    "class A(Config):\n    x: Param[Annotated[int, help('the x')]] = field(default=2)\n",
    "A.C()",
)
case(
    "annotated_pathgenerator",
    "class T(Task):\n    p: Annotated[Path, pathgenerator('out.txt')]\n    n: Param[int]\n",
    "T.C(n=1)",
    kind="path",
    path="t.p",
)
case(
    "annotated_meta",
    "class A(Config):\n    x: Param[int]\n    m: Annotated[Meta[int], help('meta')] = field(default=1)\n",
    "A.C(x=1, m=3)",
)

# --- Identifier (type ids) ---------------------------------------------------------------------
case(
    "identifier_xpmid",
    "ns = Identifier('MyLab.models')\nclass A(Config):\n    __xpmid__ = ns.BM25\n    x: Param[int]\n",
    "A.C(x=1)",
)
case(
    "identifier_xpmid_item_call",
    "ns = Identifier('mylab')\nclass A(Config):\n    __xpmid__ = ns['models']('bm25')\n    x: Param[int]\n",
    "A.C(x=1)",
)


def run_case(c: dict, gen_dir: Path) -> dict:
    from experimaestro import RunMode, experiment

    module = types.ModuleType("pbids")
    module.__file__ = str(gen_dir / "pbids.py")
    (gen_dir / "pbids.py").write_text(PRELUDE + c["source"])
    sys.modules["pbids"] = module
    out = dict(c)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(PRELUDE + c["source"], module.__file__, "exec"), module.__dict__)
            value = eval(c["expr"], module.__dict__)
            if c["kind"] == "id":
                out["identifier"] = value.__xpm__.identifier.all.hex()
            elif c["kind"] == "partial":
                spec = eval(c["partial"], module.__dict__)
                out["identifier"] = value.__xpm__.get_partial_identifier(spec).all.hex()
            else:
                ws = Path(tempfile.mkdtemp(dir=gen_dir))
                with experiment(ws, "x", run_mode=RunMode.DRY_RUN):
                    t = value.submit()
                    path = eval(c["path"], {**module.__dict__, "t": t})
                out["identifier"] = t.__xpm__.identifier.all.hex()
                out["relative_path"] = str(Path(path).relative_to(ws))
    except Exception as exc:  # noqa: BLE001 - recorded as data
        out["identifier"] = None
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        sys.modules.pop("pbids", None)
    return out


def main() -> None:
    import experimaestro

    target = Path(sys.argv[1])
    gen_dir = Path(tempfile.mkdtemp(prefix="xpm270-gen-"))
    results = [run_case(c, gen_dir) for c in CASES]
    again = [run_case(c, gen_dir) for c in CASES]
    for a, b in zip(results, again):
        assert a.get("identifier") == b.get("identifier"), a["name"]
    data = {
        "how": (
            "Generated by tests/data/make_ids_270_compat.py with experimaestro "
            f"{experimaestro.__version__} (PyPI) in a throwaway venv; see that script's docstring. "
            "Checked stable across two runs."
        ),
        "prelude": PRELUDE,
        "experimaestro_version": experimaestro.__version__,
        "cases": results,
    }
    target.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
