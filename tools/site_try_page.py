"""The Try it page of the website (tools/build_site.py): the released model classifies the
reader's image in the browser with LiteRT.js. Its markdown (web/try.md), its scripts and styles
(web/src/), LiteRT.js and its wasm builds from web/node_modules (`npm ci --prefix web`, pinned by
web/package-lock.json) and the release's fp32 and int8 `.tflite` files with their sidecars are
copied beside the page, so that nothing comes from another host."""

import json
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The Try it page: its markdown, its scripts, the release it runs (presets.PRESETS[
# training.RELEASED_PRESET].checkpoint; tests/repo/test_site.py checks they agree), and LiteRT.js.
TRY_PAGE = "web/try.md"
TRY_SITE_PATH = "try/index.md"
TRY_ASSETS = ("web/src/try.js", "web/src/preprocess.js", "web/src/try.css")
RELEASE = "checkpoints/mobilevit_v2_050_cifar10"
TRY_PRECISIONS = ("int8", "fp32")  # the first is the page's default
LITERT = "web/node_modules/@litertjs"
# Only the single-threaded builds: with relaxed SIMD (current Chrome, Edge, Firefox) and without
# (the "compat" one: Safari). The threaded and JSPI builds need options the page does not use.
LITERT_WASM = ("litert_wasm_internal", "litert_wasm_compat_internal")


class TryPageUnavailable(Exception):
    """What the Try it page lacks (LiteRT.js, the model's files), in one line."""


# LiteRT.js's table of tensor types (dist/index.js) ends with uint8: int8 goes after it.
INT8_AFTER = """    dtype: "uint8",
    typedArrayConstructor: Uint8Array,
    elementType: ElementType.UINT8
  }
]);"""
INT8_ENTRY = """,
  {
    dtype: "int8",
    typedArrayConstructor: Int8Array,
    elementType: ElementType.INT8
  }
]);"""
LITERT_HEADER = """// @litertjs/core {version} (Apache-2.0, https://github.com/google-ai-edge/LiteRT): its
// dist/index.js as npm ships it, changed by tools/build_site.py in two places: it imports
// @litertjs/wasm-utils from beside it (no bundler, no import map), and its table of tensor types
// (DATATYPES) gains int8, which LiteRT's runtime runs but the JavaScript API had no entry for
// ("Element type INT8 is not supported" on loading a full-integer model with int8 input).
"""


def _replace_once(text, old, new, what):
    if text.count(old) != 1:
        raise TryPageUnavailable(
            f"{what} is not where tools/build_site.py expects it in this LiteRT.js: update "
            "the builder for the version web/package-lock.json pins"
        )
    return text.replace(old, new)


def _without_source_map(code):
    return re.sub(r"^//# sourceMappingURL=.*\n?", "", code, flags=re.M)


def litert_version(root):
    """The @litertjs/core version in web/node_modules, which must be the one the lock file pins."""
    core = root / LITERT / "core"
    if not (core / "package.json").is_file():
        raise TryPageUnavailable("LiteRT.js is not installed: npm ci --prefix web (`make install`)")
    installed = json.loads((core / "package.json").read_text(encoding="utf-8"))["version"]
    lock = json.loads((root / "web" / "package-lock.json").read_text(encoding="utf-8"))
    pinned = lock["packages"]["node_modules/@litertjs/core"]["version"]
    if installed != pinned:
        raise TryPageUnavailable(
            f"web/node_modules holds @litertjs/core {installed} and web/package-lock.json pins "
            f"{pinned}: npm ci --prefix web"
        )
    return installed


def litert_module(root, version):
    """LiteRT.js's module (dist/index.js) as the site serves it (LITERT_HEADER says how)."""
    code = (root / LITERT / "core" / "dist" / "index.js").read_text(encoding="utf-8")
    code = _replace_once(
        code,
        'from "@litertjs/wasm-utils";',
        'from "./litert-wasm-utils.js";',
        "the import of @litertjs/wasm-utils",
    )
    table = code[code.index("var DATATYPES") : code.index("function getDataType")]
    if '"int8"' not in table:  # a later LiteRT.js may have it
        code = _replace_once(
            code, INT8_AFTER, INT8_AFTER[: -len("\n]);")] + INT8_ENTRY, "DATATYPES"
        )
    return LITERT_HEADER.format(version=version) + _without_source_map(code)


def vendor_litert(root, out, module):
    """LiteRT.js (its module, `litert_module`, the module it imports and the wasm builds the
    page loads) copied to `out`."""
    core = root / LITERT / "core"
    out.mkdir(parents=True, exist_ok=True)
    (out / "litert-core.js").write_text(module, encoding="utf-8")
    utils = (root / LITERT / "wasm-utils" / "dist" / "index.js").read_text(encoding="utf-8")
    (out / "litert-wasm-utils.js").write_text(_without_source_map(utils), encoding="utf-8")
    (out / "wasm").mkdir()
    for stem in LITERT_WASM:
        for suffix in (".js", ".wasm"):
            shutil.copy2(core / "wasm" / f"{stem}{suffix}", out / "wasm" / f"{stem}{suffix}")


def release_models(root, model_dir=None):
    """{precision: (.tflite, .json)} of the release, for the Try it page. From `model_dir`, else
    from artifacts/tflite/<release>/, where web/export_model.py exports them first when they are
    missing or older than the release's model.keras (about a minute, once)."""
    name = Path(RELEASE).name
    folder = Path(model_dir) if model_dir else root / "artifacts" / "tflite" / name
    files = {
        p: (folder / f"{name}_{p}.tflite", folder / f"{name}_{p}.json") for p in TRY_PRECISIONS
    }
    keras = root / RELEASE / "model.keras"

    def fresh():
        made = keras.stat().st_mtime
        return all(
            f.is_file() and f.stat().st_mtime >= made for pair in files.values() for f in pair
        )

    if fresh():
        return files
    if model_dir:
        raise TryPageUnavailable(
            f"{folder} lacks {name}_<int8|fp32>.tflite/.json, or they are older than {keras}"
        )
    print(
        f"Exporting {name} to fp32 and int8 .tflite files for the Try it page "
        "(web/export_model.py, about a minute)"
    )
    export = [
        sys.executable,
        str(root / "web" / "export_model.py"),
        "--release",
        str(root / RELEASE),
    ]
    made = subprocess.run([*export, "--out", str(folder)], capture_output=True, text=True)
    if made.returncode != 0 or not fresh():
        said = (made.stdout + made.stderr).strip().splitlines()
        raise TryPageUnavailable(
            f"web/export_model.py failed: {said[-1] if said else made.returncode}"
        )
    return files


def prepare_try_page(root, model_dir=None):
    """What the Try it page needs, checked (LiteRT.js) and made (the model's files)."""
    version = litert_version(root)
    module = litert_module(root, version)
    return {"litert": version, "module": module, "models": release_models(root, model_dir)}


def write_try_page(root, docs_dir, needs):
    """The Try it page's files beside its markdown page (try/): its scripts and styles,
    LiteRT.js, the model files and models/index.json, which lists them for the page."""
    target = docs_dir / posixpath.dirname(TRY_SITE_PATH)
    target.mkdir(parents=True, exist_ok=True)
    for asset in TRY_ASSETS:
        shutil.copy2(root / asset, target / posixpath.basename(asset))
    vendor_litert(root, target / "vendor", needs["module"])
    (target / "models").mkdir()
    models = []
    for precision, (tflite, sidecar) in needs["models"].items():
        for path in (tflite, sidecar):
            shutil.copy2(path, target / "models" / path.name)
        models.append(
            {
                "id": precision,
                "label": precision,
                "tflite": f"models/{tflite.name}",
                "sidecar": f"models/{sidecar.name}",
                "bytes": tflite.stat().st_size,
            }
        )
    index = {"litert": needs["litert"], "release": RELEASE, "default": TRY_PRECISIONS[0]}
    (target / "models" / "index.json").write_text(json.dumps({**index, "models": models}, indent=2))
