"""The package builds as a wheel that carries its type information and
installs on its own: what `pip install ifc-client` would get."""

import pathlib
import subprocess
import sys
import zipfile

HERE = pathlib.Path(__file__).resolve().parent.parent


def test_the_wheel_builds_with_its_types_and_installs(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(HERE)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stderr
    wheels = list(tmp_path.glob("ifc_client-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "ifc_client/py.typed" in names, names
    assert "ifc_client/__init__.py" in names
    assert not any(n.startswith("tests/") for n in names), "tests stay out of the wheel"

    # Installed into a fresh target directory, it imports the seed's names.
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheels[0])],
        capture_output=True, text=True,
    )
    assert installed.returncode == 0, installed.stderr
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); import ifc_client; "
         "from ifc_client import IFCoordinator, EventBus, CoordinatorError, TaskNotFoundError; "
         "print(ifc_client.__file__)", str(target)],
        capture_output=True, text=True,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(target)), probe.stdout
