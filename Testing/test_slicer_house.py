"""The Slicer "house", checked without Slicer: CMake lists, the module file, its panel, the icons,
and the core's independence from Slicer.

Slicer cannot run here, so these tests read the files: what Slicer's build macro and module loader
would trip on (a listed file that is missing, an unlisted file that is not packaged, a widget the code
asks for that the .ui lacks, a slicer.util call that does not exist) fails here first. The helpers
are plain functions, and the last tests feed them broken inputs to show that each check can fail.
"""

from __future__ import annotations

import ast
import importlib.util
import py_compile
import re
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
MODULE_DIR = REPO / "DKOARSegmentation"
MODULE_CMAKE = MODULE_DIR / "CMakeLists.txt"
EXTENSION_CMAKE = REPO / "CMakeLists.txt"
MAIN = MODULE_DIR / "DKOARSegmentation.py"
UI = MODULE_DIR / "Resources" / "UI" / "DKOARSegmentation.ui"
LIB = MODULE_DIR / "DKOARSegmentationLib"
MRML = MODULE_DIR / "DKOARSegmentationMRML"  # the MRML glue: imports slicer and vtk, never qt or ctk
QT = MODULE_DIR / "DKOARSegmentationQt"  # sections of the Qt panel: run inside Slicer only
RESOURCES = MODULE_DIR / "Resources"
ICONS = (REPO / "DKOARSegmentation.png", RESOURCES / "Icons" / "DKOARSegmentation.png")
SLICER_API = REPO / ".." / "shared" / "slicer-api" / "SLICER_API.txt"

REQUIRED_CLASSES = ("DKOARSegmentation", "DKOARSegmentationWidget", "DKOARSegmentationLogic", "DKOARSegmentationTest")
REQUIRED_RESOURCES = (
    "Resources/Icons/DKOARSegmentation.png",
    "Resources/UI/DKOARSegmentation.ui",
    "Resources/structures.csv",
    "Resources/DemoModel/dataset.json",
    "Resources/DemoModel/plans.json",
    "Resources/DemoModel/fold_0/checkpoint_final.pth",
    "Resources/DemoModel/dkoar_model.json",
)
FORBIDDEN_IN_CORE = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "PythonQt", "__main__", "DKOARSegmentationMRML",
                     "DKOARSegmentation", "DKOARSegmentationQt"}
# the MRML glue runs in slicer-core (no Qt) and must not reach the panel (the module file) either
FORBIDDEN_IN_MRML = {"qt", "ctk", "PythonQt", "qSlicerSegmentationsModuleWidgetsPythonQt", "DKOARSegmentation",
                     "DKOARSegmentationQt", "__main__"}
RUN_GENERATOR = "run: python tools/update_cmake_lists.py"


# ---------------------------------------------------------------------------------------------
# helpers (pure functions of text, so that the checks themselves can be tested)


def _strip_cmake_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def cmake_list(text: str, variable: str, substitutions: dict[str, str] | None = None) -> list[str]:
    """The items of ``set(variable ...)`` in a CMake file."""
    match = re.search(rf"\bset\(\s*{variable}\b(.*?)\)", _strip_cmake_comments(text), re.DOTALL)
    if match is None:
        raise AssertionError(f"no set({variable} ...) in the CMake file")
    items = match.group(1).split()
    for key, value in (substitutions or {}).items():
        items = [item.replace("${" + key + "}", value) for item in items]
    return items


def cmake_named_paths(text: str) -> list[str]:
    """Every path a module CMakeLists.txt names: scripts, resources, test scripts, subdirectories."""
    subs = {}
    name = re.search(r"\bset\(\s*MODULE_NAME\s+(\S+?)\s*\)", text)
    if name:
        subs["MODULE_NAME"] = name.group(1)
    code = _strip_cmake_comments(text)
    paths = cmake_list(text, "MODULE_PYTHON_SCRIPTS", subs) + cmake_list(text, "MODULE_PYTHON_RESOURCES", subs)
    for script in re.findall(r"slicer_add_python_unittest\(\s*SCRIPT\s+(\S+?)[\s)]", code):
        for key, value in subs.items():
            script = script.replace("${" + key + "}", value)
        paths.append(script)
    for sub in re.findall(r"add_subdirectory\(\s*(\S+?)\s*\)", code):
        paths.append(f"{sub}/CMakeLists.txt")
    return paths


def ui_widgets(ui_text: str) -> dict[str, str]:
    """widget name -> class, for every widget of a Qt Designer file."""
    root = ET.fromstring(ui_text)
    return {w.get("name"): w.get("class") for w in root.iter("widget")}


def ui_parameter_names(ui_text: str) -> dict[str, str]:
    """widget name -> its SlicerParameterName dynamic property."""
    found = {}
    for widget in ET.fromstring(ui_text).iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                found[widget.get("name")] = (prop.findtext("string") or "").strip()
    return found


def ui_problems(ui_text: str, py_source: str, parameter_fields: set[str]) -> list[str]:
    problems = []
    try:
        widgets = ui_widgets(ui_text)
    except ET.ParseError as exc:
        return [f"the .ui is not well-formed XML: {exc}"]
    for name in sorted(set(re.findall(r"\bself\.ui\.(\w+)", py_source))):
        if name not in widgets:
            problems.append(f"self.ui.{name} is used but the .ui has no widget named {name!r}")
    bound = ui_parameter_names(ui_text)
    for widget, parameter in sorted(bound.items()):
        if parameter not in parameter_fields:
            problems.append(f"widget {widget} is bound to {parameter!r}, which the parameter node lacks")
    hand_bound = re.search(r"HAND_BOUND_PARAMETERS = \(([^)]*)\)", py_source)
    by_hand = set(re.findall(r"[\"'](\w+)[\"']", hand_bound.group(1))) if hand_bound else set()
    for field in sorted(by_hand - parameter_fields):
        problems.append(f"{field!r} is declared bound by hand but the parameter node lacks it")
    for field in sorted(parameter_fields - set(bound.values()) - by_hand):
        problems.append(f"parameter {field!r} has no widget with SlicerParameterName {field!r}")
    root = ET.fromstring(ui_text)
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    for widget, cls in widgets.items():
        if cls and not cls.startswith("Q") and cls not in declared:
            problems.append(f"widget {widget} is a {cls}, which the customwidgets section does not declare")
    top = root.find("widget")
    scene_receivers = {
        c.findtext("receiver") for c in root.iter("connection")
        if c.findtext("sender") == (top.get("name") if top is not None else None)
        and c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    for widget, cls in widgets.items():
        if cls and cls.startswith("qMRML") and widget != (top.get("name") if top is not None else None) \
                and widget not in scene_receivers:
            problems.append(f"{widget} ({cls}) gets no mrmlSceneChanged -> setMRMLScene connection")
    return problems


def annotated_fields(py_source: str, class_name: str) -> set[str]:
    for node in ast.walk(ast.parse(py_source)):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
    raise AssertionError(f"no class {class_name}")


def slicer_api(api_text: str) -> dict[tuple[str, str], set[str] | None]:
    """(module, name) -> parameter names (None for a class or attribute) for slicer.util/.packaging."""
    api: dict[tuple[str, str], set[str] | None] = {}
    for line in api_text.splitlines():
        match = re.match(r"python:slicer\.(util|packaging)\.(\w+)(\((.*)\))?$", line.strip())
        if match:
            params = None
            if match.group(3) is not None:
                params = {p.strip().lstrip("*").split("=")[0].strip() for p in match.group(4).split(",") if p.strip()}
            api[(match.group(1), match.group(2))] = params
        else:
            nested = re.match(r"python:slicer\.(util|packaging)\.(\w+)\.", line.strip())
            if nested:
                api.setdefault((nested.group(1), nested.group(2)), None)
    return api


def slicer_api_uses(py_source: str) -> list[tuple[str, str, list[str], int]]:
    """(module, name, keyword names, line) for each use of slicer.util.X / slicer.packaging.X, also
    through ``from slicer import packaging`` (then ``packaging.X``)."""
    uses = []
    tree = ast.parse(py_source)
    called = {}
    aliases = {}  # local name -> "util" / "packaging"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called[id(node.func)] = [k.arg for k in node.keywords if k.arg]
        elif isinstance(node, ast.ImportFrom) and node.module == "slicer":
            aliases.update({a.asname or a.name: a.name for a in node.names if a.name in ("util", "packaging")})
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "slicer"
                and node.value.attr in ("util", "packaging")):
            uses.append((node.value.attr, node.attr, called.get(id(node), []), node.lineno))
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            uses.append((aliases[node.value.id], node.attr, called.get(id(node), []), node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module in ("slicer.util", "slicer.packaging"):
            for alias in node.names:
                uses.append((node.module.split(".")[1], alias.name, [], node.lineno))
    return uses


def slicer_made_local(py_source: str) -> list[str]:
    """Functions that ``import slicer.x`` (or ``import slicer``) and use the name ``slicer``: the
    import makes ``slicer`` a local name of the whole function, so a use before it, or after it
    failed (an ImportError caught on an older Slicer), raises UnboundLocalError."""
    problems = []
    for function in ast.walk(ast.parse(py_source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        imports = [n for n in ast.walk(function) if isinstance(n, ast.Import)
                   and any(a.asname is None and a.name.split(".")[0] == "slicer" for a in n.names)]
        uses = [n for n in ast.walk(function) if isinstance(n, ast.Name) and n.id == "slicer"]
        if imports and uses:
            problems.append(f"line {imports[0].lineno}: {function.name} imports {imports[0].names[0].name}, which "
                            f"makes 'slicer' local to the function (used at line {uses[0].lineno}); write "
                            "'from slicer import x' instead")
    return problems


def api_problems(py_source: str, api_text: str) -> list[str]:
    api = slicer_api(api_text)
    problems = []
    for module, name, keywords, line in slicer_api_uses(py_source):
        if (module, name) not in api:
            problems.append(f"line {line}: slicer.{module}.{name} is not in Slicer's API")
            continue
        params = api[(module, name)]
        for keyword in keywords:
            if params is not None and keyword not in params and "kwargs" not in params:
                problems.append(f"line {line}: slicer.{module}.{name} has no parameter {keyword!r}")
    return problems


def forbidden_imports(py_source: str, forbidden: set[str] = FORBIDDEN_IN_CORE) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(py_source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in forbidden]
    return found


def png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) of a PNG; raises ValueError if it is not one."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour


def class_source(py_source: str, class_name: str) -> str:
    for node in ast.parse(py_source).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return ast.get_source_segment(py_source, node) or ""
    raise AssertionError(f"no class {class_name}")


def _load_generator():
    spec = importlib.util.spec_from_file_location("update_cmake_lists", REPO / "tools" / "update_cmake_lists.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path, suffix: str | None = None) -> list[str]:
    return sorted(
        p.relative_to(MODULE_DIR).as_posix() for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc" and (suffix is None or p.suffix == suffix)
    )


# ---------------------------------------------------------------------------------------------
# the house


def test_every_file_named_in_the_module_cmakelists_exists():
    missing = [p for p in cmake_named_paths(MODULE_CMAKE.read_text(encoding="utf-8")) if not (MODULE_DIR / p).is_file()]
    assert not missing, f"DKOARSegmentation/CMakeLists.txt names files that do not exist: {missing} ({RUN_GENERATOR})"


def test_every_lib_file_and_resource_is_named():
    text = MODULE_CMAKE.read_text(encoding="utf-8")
    scripts = cmake_list(text, "MODULE_PYTHON_SCRIPTS", {"MODULE_NAME": "DKOARSegmentation"})
    resources = cmake_list(text, "MODULE_PYTHON_RESOURCES", {"MODULE_NAME": "DKOARSegmentation"})
    assert "DKOARSegmentation.py" in scripts
    unlisted = [p for p in _files(LIB, ".py") + _files(MRML, ".py") + _files(QT, ".py") if p not in scripts]
    unlisted += [p for p in _files(RESOURCES) if p not in resources]
    assert not unlisted, f"files Slicer would not package: {unlisted} ({RUN_GENERATOR})"
    assert len(scripts) == len(set(scripts)) and len(resources) == len(set(resources)), "a file is listed twice"


def test_required_resources_are_shipped():
    resources = cmake_list(MODULE_CMAKE.read_text(encoding="utf-8"), "MODULE_PYTHON_RESOURCES")
    absent = [r for r in REQUIRED_RESOURCES if r not in resources or not (MODULE_DIR / r).is_file()]
    assert not absent, f"the module must ship these files (then {RUN_GENERATOR}): {absent}"


def test_the_module_cmakelists_builds_a_scripted_module_with_tests():
    code = _strip_cmake_comments(MODULE_CMAKE.read_text(encoding="utf-8"))
    assert re.search(r"slicerMacroBuildScriptedModule\(.*?WITH_GENERIC_TESTS.*?\)", code, re.DOTALL)
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py", code)


def test_the_generator_keeps_the_lists_up_to_date(tmp_path):
    generator = _load_generator()
    module = tmp_path / "DKOARSegmentation"
    for rel in ("DKOARSegmentation.py", "DKOARSegmentationLib/__init__.py", "DKOARSegmentationLib/sub/b.py",
                "DKOARSegmentationMRML/__init__.py", "DKOARSegmentationMRML/__pycache__/y.cpython-311.pyc",
                "DKOARSegmentationLib/__pycache__/x.cpython-311.pyc", "DKOARSegmentationLib/notes.txt",
                "Resources/structures.csv", "Resources/DemoModel/fold_0/checkpoint_final.pth",
                "Resources/__pycache__/junk.pyc"):
        (module / rel).parent.mkdir(parents=True, exist_ok=True)
        (module / rel).write_text("x", encoding="utf-8")
    cmake = module / "CMakeLists.txt"
    cmake.write_text("set(MODULE_NAME DKOARSegmentation)\n# keep me\nset(MODULE_PYTHON_SCRIPTS\n  gone.py\n  )\n\n"
                     "set(MODULE_PYTHON_RESOURCES\n  )\nslicerMacroBuildScriptedModule(NAME x)\n", encoding="utf-8")
    assert generator.main(["--module-dir", str(module), "--check"]) == 1
    assert generator.main(["--module-dir", str(module)]) == 0
    text = cmake.read_text(encoding="utf-8")
    assert cmake_list(text, "MODULE_PYTHON_SCRIPTS") == [
        "DKOARSegmentation.py", "DKOARSegmentationLib/__init__.py", "DKOARSegmentationLib/sub/b.py",
        "DKOARSegmentationMRML/__init__.py"]
    assert cmake_list(text, "MODULE_PYTHON_RESOURCES") == [
        "Resources/DemoModel/fold_0/checkpoint_final.pth", "Resources/structures.csv"]
    assert "# keep me" in text and "slicerMacroBuildScriptedModule(NAME x)" in text
    assert generator.main(["--module-dir", str(module), "--check"]) == 0
    (module / "DKOARSegmentationLib" / "new.py").write_text("", encoding="utf-8")
    assert generator.main(["--module-dir", str(module), "--check"]) == 1
    assert generator.main(["--module-dir", str(module)]) == 0
    (module / "DKOARSegmentationMRML" / "glue.py").write_text("", encoding="utf-8")
    assert generator.main(["--module-dir", str(module), "--check"]) == 1


def test_the_extension_cmakelists_has_its_metadata():
    text = EXTENSION_CMAKE.read_text(encoding="utf-8")
    code = _strip_cmake_comments(text)
    for call in ("cmake_minimum_required", "project(DKOARSegmentation)", "find_package(Slicer REQUIRED)",
                 "include(${Slicer_USE_FILE})", "add_subdirectory(DKOARSegmentation)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert call in code, call
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert re.search(rf'\bset\(\s*{variable}\s+"[^"]+"\s*\)', code), variable
    assert re.search(r'\bset\(\s*EXTENSION_DEPENDS\s+"PyTorch"\s*\)', code)
    icon = re.search(r'EXTENSION_ICONURL\s+"([^"]+)"', code).group(1)
    match = re.match(r"https://raw\.githubusercontent\.com/dkoar/DKOARSegmentation/[^/]+/(.+)$", icon)
    assert match and (REPO / match.group(1)).is_file(), f"the icon URL {icon} points to no file of the repository"


def test_the_extension_screenshots_exist():
    code = _strip_cmake_comments(EXTENSION_CMAKE.read_text(encoding="utf-8"))
    urls = re.search(r'EXTENSION_SCREENSHOTURLS\s+"([^"]+)"', code).group(1).split()
    for url in urls:
        match = re.match(r"https://raw\.githubusercontent\.com/dkoar/DKOARSegmentation/[^/]+/(.+)$", url)
        assert match, f"{url} does not point into the repository"
        assert (REPO / match.group(1)).is_file(), f"the screenshot {match.group(1)} is missing"


def test_the_module_file_compiles_and_defines_its_classes(tmp_path):
    py_compile.compile(str(MAIN), cfile=str(tmp_path / "main.pyc"), doraise=True)
    source = MAIN.read_text(encoding="utf-8")
    classes = {n.name for n in ast.parse(source).body if isinstance(n, ast.ClassDef)}
    missing = [c for c in REQUIRED_CLASSES + ("DKOARSegmentationParameterNode",) if c not in classes]
    assert not missing, f"DKOARSegmentation.py lacks the classes {missing}"
    assert '"DK OAR Segmentation"' in source
    assert "Demonstration model: not for clinical use" in source
    assert annotated_fields(source, "DKOARSegmentationParameterNode") == {"inputVolume", "modelPath", "device",
                                                                           "outputFolder", "structures"}


def test_the_module_file_does_not_import_the_core_at_load_time():
    """The file must load (and offer to install packages) before the core's dependencies exist."""
    tree = ast.parse(MAIN.read_text(encoding="utf-8"))
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module]
    assert not [n for n in names if n.split(".")[0] in ("DKOARSegmentationLib", "qt", "ctk", "torch", "numpy")]


def test_the_logic_has_no_qt_and_no_dialogs():
    logic = class_source(MAIN.read_text(encoding="utf-8"), "DKOARSegmentationLogic")
    assert not re.search(r"\bimport qt\b|\bqt\.|\bctk\.|Display\(|QMessageBox", logic)


def test_the_ui_matches_the_code():
    source = MAIN.read_text(encoding="utf-8")
    fields = annotated_fields(source, "DKOARSegmentationParameterNode")
    problems = ui_problems(UI.read_text(encoding="utf-8"), source, fields)
    assert not problems, "\n".join(problems)
    widgets = ui_widgets(UI.read_text(encoding="utf-8"))
    for name, cls in {"inputsCollapsibleButton": "ctkCollapsibleButton", "inputVolumeSelector": "qMRMLNodeComboBox",
                      "modelPathLineEdit": "ctkPathLineEdit", "deviceComboBox": "QComboBox",
                      "outputFolderLineEdit": "ctkPathLineEdit", "demoWarningLabel": "QLabel",
                      "applyButton": "QPushButton", "progressBar": "QProgressBar", "statusLabel": "QLabel"}.items():
        assert widgets.get(name) == cls, f"{name} should be a {cls}"


def _qt_files() -> list[Path]:
    return sorted(p for p in QT.rglob("*.py") if "__pycache__" not in p.parts)


def test_slicer_util_and_packaging_calls_exist():
    if not SLICER_API.is_file():
        pytest.skip(f"{SLICER_API} is absent")
    api = SLICER_API.read_text(encoding="utf-8")
    problems = [f"{path.name}: {problem}" for path in [MAIN, *_qt_files()]
                for problem in api_problems(path.read_text(encoding="utf-8"), api)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", ICONS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_icons_are_128_pixel_pngs(path):
    data = path.read_bytes()
    assert png_header(data)[:2] == (128, 128)
    pil = pytest.importorskip("PIL.Image")
    with pil.open(path) as image:
        image.load()  # decodes every byte
        assert image.size == (128, 128)
        assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, "the icon is (nearly) blank"


def _mrml_files() -> list[Path]:
    return sorted(p for p in MRML.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_mrml_glue_exists_and_is_a_package():
    assert (MRML / "__init__.py").is_file()
    assert len(_mrml_files()) >= 5


def test_the_mrml_glue_never_imports_qt_or_ctk():
    found = []
    for path in _mrml_files():
        source = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(REPO)}:{line}: import {name}"
                  for line, name in forbidden_imports(source, FORBIDDEN_IN_MRML)]
        # nor through slicer's namespace (slicer.app, slicer.qSlicer..., qMRML widgets exist only with Qt)
        found += [f"{path.relative_to(REPO)}:{n}: {m.group(0)}" for n, line in enumerate(source.splitlines(), 1)
                  for m in [re.search(r"\bslicer\.(app\b|q[A-Z]\w*|ScriptedLoadableModule)|\bqt\.|\bctk\.",
                                                line.split("#", 1)[0])] if m]
    assert not found, "\n".join(found)


def test_the_mrml_glue_slicer_util_calls_exist():
    if not SLICER_API.is_file():
        pytest.skip(f"{SLICER_API} is absent")
    api = SLICER_API.read_text(encoding="utf-8")
    problems = [f"{path.name}: {problem}" for path in _mrml_files()
                for problem in api_problems(path.read_text(encoding="utf-8"), api)]
    assert not problems, "\n".join(problems)


def test_the_core_never_imports_slicer_qt_ctk_or_vtk():
    found = []
    for path in sorted(LIB.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        found += [f"{path.relative_to(REPO)}:{line}: import {name}"
                  for line, name in forbidden_imports(path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def _requirement_names(requirements) -> dict[str, str]:
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower().replace("_", "-"): r.replace(" ", "")
            for r in requirements}


def _module_list(source: str, name: str) -> list[str]:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"DKOARSegmentation.py has no {name} list")


def test_the_module_asks_for_the_core_dependencies_of_pyproject():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = _requirement_names(r for r in pyproject["project"]["dependencies"] if not r.lower().startswith("torch"))
    asked = _requirement_names(_module_list(MAIN.read_text(encoding="utf-8"), "DEPENDENCIES"))
    assert asked == wanted, "DEPENDENCIES in DKOARSegmentation.py differs from pyproject.toml (torch aside)"


def test_what_the_module_asks_for_is_what_the_tests_run():
    """Every package the panel installs in Slicer, in a version range that the pinned, tested
    version satisfies; the --no-deps ones are pinned too and left out of pyproject.toml's
    requirements (their own would pull a CUDA torch)."""
    from packaging.requirements import Requirement

    pins = {}
    for line in (REPO / "requirements" / "dev-lock.txt").read_text(encoding="utf-8").splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version.strip()
    source = MAIN.read_text(encoding="utf-8")
    no_deps = _module_list(source, "NO_DEPS_DEPENDENCIES")
    for text in _module_list(source, "DEPENDENCIES") + no_deps:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements/dev-lock.txt"
        assert requirement.specifier.contains(pins[name]), f"the tested {name} {pins[name]} is outside {text}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    declared = set(_requirement_names(pyproject["project"]["dependencies"]))
    assert not declared & set(_requirement_names(no_deps))


def test_no_function_makes_slicer_a_local_name():
    problems = [f"{path.relative_to(REPO)}: {problem}" for path in [MAIN, *_mrml_files(), *_qt_files()]
                for problem in slicer_made_local(path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_the_background_launcher_takes_slicers_launch_arguments():
    """The MRML logic calls its launcher as slicer.util.launchConsoleProcess (Slicer 5.12); the
    core's launch_child, used where Slicer's is absent, takes the same arguments."""
    import inspect

    from DKOARSegmentationLib.pipeline.background import launch_child

    used = {"updateEnvironment", "blocking", "logCallback", "completedCallback"}
    assert used <= set(inspect.signature(launch_child).parameters)
    if not SLICER_API.is_file():
        pytest.skip(f"{SLICER_API} is absent")
    params = slicer_api(SLICER_API.read_text(encoding="utf-8"))[("util", "launchConsoleProcess")]
    assert used <= params, f"slicer.util.launchConsoleProcess takes {sorted(params)}"


# ---------------------------------------------------------------------------------------------
# the checks can fail


def test_check_catches_a_missing_listed_file():
    text = "set(MODULE_NAME M)\nset(MODULE_PYTHON_SCRIPTS\n  ${MODULE_NAME}.py\n  Lib/gone.py # c\n  )\n" \
           "set(MODULE_PYTHON_RESOURCES\n  )\nadd_subdirectory(Testing/Python)\n"
    assert cmake_named_paths(text) == ["M.py", "Lib/gone.py", "Testing/Python/CMakeLists.txt"]


def test_check_catches_ui_mismatches():
    ui = """<ui version="4.0"><widget class="qMRMLWidget" name="Top">
      <widget class="qMRMLNodeComboBox" name="inputVolumeSelector">
        <property name="SlicerParameterName" stdset="0"><string>inputVolme</string></property></widget>
      <widget class="ctkPathLineEdit" name="modelPathLineEdit"/></widget>
      <customwidgets><customwidget><class>qMRMLNodeComboBox</class></customwidget></customwidgets></ui>"""
    problems = ui_problems(ui, "self.ui.applyButton.enabled = True", {"inputVolume"})
    text = "\n".join(problems)
    assert "self.ui.applyButton" in text
    assert "'inputVolme'" in text and "'inputVolume' has no widget" in text
    assert "ctkPathLineEdit" in text
    assert "inputVolumeSelector (qMRMLNodeComboBox) gets no mrmlSceneChanged" in text
    assert ui_problems("<ui><widget>", "", set())[0].startswith("the .ui is not well-formed")
    # a parameter bound by hand is declared so; a declaration must name a real parameter
    top = '<ui version="4.0"><widget class="QWidget" name="Top"/></ui>'
    assert ui_problems(top, 'HAND_BOUND_PARAMETERS = ("structures",)', {"structures"}) == []
    assert "'structures' has no widget" in "\n".join(ui_problems(top, "", {"structures"}))
    assert "'structure' is declared bound by hand" in "\n".join(
        ui_problems(top, 'HAND_BOUND_PARAMETERS = ("structure",)', {"structures"}))


def test_check_catches_unknown_slicer_calls():
    api = "python:slicer.util.loadUI(path)\npython:slicer.util.VTKObservationMixin.addObserver(self, obj)\n" \
          "python:slicer.packaging.pip_ensure(requirements, requester)\n"
    good = "import slicer\nfrom slicer.util import VTKObservationMixin\nslicer.util.loadUI('x')\n" \
           "slicer.packaging.pip_ensure(['a'], requester='me')\n"
    assert api_problems(good, api) == []
    bad = "import slicer\nslicer.util.loadUi('x')\nslicer.packaging.pip_ensure(['a'], asker='me')\n" \
          "from slicer.util import NoSuchThing\n"
    text = "\n".join(api_problems(bad, api))
    assert "slicer.util.loadUi" in text and "'asker'" in text and "NoSuchThing" in text


def test_check_catches_slicer_made_local():
    broken = ("import slicer\n\ndef ensure():\n    try:\n        import slicer.packaging\n    except ImportError:\n"
              "        return slicer.util.pip_install('x')\n")
    assert "makes 'slicer' local" in "\n".join(slicer_made_local(broken))
    assert slicer_made_local("import slicer\n\ndef ensure():\n    from slicer import packaging\n"
                             "    return slicer.util.confirmOkCancelDisplay('x')\n") == []
    uses = slicer_api_uses("from slicer import packaging\npackaging.pip_ensure(['a'], asker=1)\n")
    assert uses == [("packaging", "pip_ensure", ["asker"], 2)]


def test_check_catches_qt_in_the_mrml_glue():
    source = "import slicer\nimport vtk\ndef f():\n    import qt\nfrom ctk import ctkPathLineEdit\n"
    assert sorted(name for _, name in forbidden_imports(source, FORBIDDEN_IN_MRML)) == ["ctk", "qt"]


def test_check_catches_slicer_imports_in_the_core():
    source = "import os\nimport vtk.util\nfrom qt import QTimer\n\ndef f():\n    import slicer\nfrom . import ctk\n"
    assert [name for _, name in forbidden_imports(source)] == ["vtk.util", "qt", "slicer"]


def test_check_catches_a_wrong_icon(tmp_path):
    with pytest.raises(ValueError):
        png_header(b"GIF89a" + bytes(40))
    pil = pytest.importorskip("PIL.Image")
    path = tmp_path / "small.png"
    pil.new("RGBA", (64, 64)).save(path)
    assert png_header(path.read_bytes())[:2] == (64, 64)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
