"""Tests of setup.cfg's requirements: floors at versions known to be safe, and CI's pinned versions inside them."""

import configparser
from importlib import metadata

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from src import paths

SETUP = configparser.ConfigParser()
SETUP.read(paths.REPO_ROOT / "setup.cfg", encoding="utf-8")


def requirements(section: str, key: str) -> dict[str, Requirement]:
    lines = [line.strip() for line in SETUP[section][key].splitlines()]
    parsed = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {requirement.name.lower().replace("_", "-"): requirement for requirement in parsed}


INSTALL = requirements("options", "install_requires")
DEV = requirements("options.extras_require", "dev")
PINNED = {name.lower().replace("_", "-"): Version(version) for name, version in
          (line.split("==") for line in (paths.REPO_ROOT / ".ci" / "constraints.txt").read_text().split()
           if "==" in line)}


def test_requirements_refuse_the_versions_known_to_be_unsafe_or_broken():
    refused = {
        "keras": ["3.8.0", "3.10.0", "3.11.3"],  # safe_mode bypasses, fixed in 3.9 and 3.11; 3.12 is the floor
        "kaggle": ["1.7.4.5", "2.0.0", "2.2.4"],  # `kernels output` wrote files wherever their names pointed
        # 0.1.31 and 0.1.32 broke `import kaggle`; kaggle 2.2.5 needs 0.1.38
        "kagglesdk": ["0.1.30", "0.1.31", "0.1.32", "0.1.37"],
    }
    accepted = {"keras": "3.12.0", "kaggle": "2.2.5", "kagglesdk": "0.1.38"}
    for name, versions in refused.items():
        specifier = INSTALL[name].specifier
        assert [version for version in versions if specifier.contains(version)] == [], name
        assert specifier.contains(accepted[name]), name


def test_ci_s_pinned_versions_are_inside_the_ranges():
    for name, requirement in {**INSTALL, **DEV}.items():
        assert name in PINNED, f"{name} has no pinned version in .ci/constraints.txt"
        assert requirement.specifier.contains(PINNED[name]), (name, str(requirement.specifier), PINNED[name])


def test_python_requires_is_what_the_kaggle_cli_needs():
    needed = SpecifierSet(metadata.metadata("kaggle")["Requires-Python"])
    floor = Version(SETUP["options"]["python_requires"].removeprefix(">="))
    assert needed.contains(floor)
