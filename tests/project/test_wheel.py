"""The hmat wheel holds the library only and works outside this repository.

Builds the wheel offline (no build isolation: setuptools and wheel come from the test extra),
installs it without dependencies into a fresh virtual environment in a temporary folder, and
runs a smoke test there with the temporary folder as working directory. The dependencies
(numpy, scipy, numba, torch) are borrowed from the environment running pytest through a ``.pth``
file that names its site-packages folder: path lines of a ``.pth`` file extend ``sys.path`` but
the ``.pth`` files inside that folder are not processed, so the editable installs of hmat and
hmatbook there stay invisible and ``import hmat`` can only find the wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # tests/project/ -> the checkout

SMOKE = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import numba  # noqa: F401  (numba itself imports yaml when it is installed)
    import numpy as np

    before = set(sys.modules)
    import hmat

    venv = Path(sys.argv[1]).resolve()
    out = {"hmat_file": hmat.__file__}
    assert Path(hmat.__file__).resolve().is_relative_to(venv), hmat.__file__
    heavy = {"torch", "yaml", "tqdm", "matplotlib", "pandas", "hmatbook"}
    heavy = sorted(heavy & (set(sys.modules) - before))
    assert not heavy, f"import hmat imported {heavy}"

    rng = np.random.default_rng(0)
    A = rng.standard_normal((200, 150))
    H = hmat.compress(A, rank=5)
    x = rng.standard_normal(150)
    np.testing.assert_allclose(H @ x, H.to_dense() @ x, rtol=1e-10, atol=1e-10)

    path = Path("h.npz").resolve()
    H.save(path)
    H2 = hmat.load(path)
    np.testing.assert_array_equal(H2.to_dense(), H.to_dense())
    np.testing.assert_allclose(H2 @ x, H @ x, rtol=1e-12, atol=1e-12)

    try:
        import torch
    except ImportError:
        out["torch"] = False
    else:
        import hmat.nn

        layer = hmat.nn.HLinear(H).eval()
        with torch.no_grad():
            y = layer(torch.from_numpy(x[None, :]))  # float64, as H
        np.testing.assert_allclose(y.numpy()[0], H @ x, rtol=1e-8, atol=1e-8)
        out["torch"] = True
    print("SMOKE " + json.dumps(out))
''')


def _run(cmd, **kw):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert proc.returncode == 0, (f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--disable-pip-version-check", "-q", "-w", str(out), str(ROOT)],
         cwd=ROOT)
    (path,) = out.glob("hmat-*.whl")
    return path


def test_wheel_holds_the_library_only(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        sources = {n: zf.read(n).decode("utf-8", errors="replace")
                   for n in names if n.endswith(".py")}
    top = {n.split("/")[0] for n in names}
    assert top == {"hmat", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, top
    assert not [n for n in names if "hmatbook" in n or "experiments" in n]
    assert not [n for n in names if n.startswith(("data/", "book/", "tests/"))]
    assert "hmat/nn/hlinear.py" in names and "hmat/__init__.py" in names
    leaked = [n for n, text in sources.items() if str(ROOT) in text]
    assert not leaked, f"modules that name the checkout {ROOT}: {leaked}"
    with zipfile.ZipFile(wheel) as zf:
        meta = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(r.split(">")[0].split("=")[0].split("<")[0].strip() for r in requires) == \
        ["numba", "numpy", "scipy", "threadpoolctl"], requires


def test_wheel_works_in_a_fresh_environment_outside_the_checkout(wheel, tmp_path):
    """About 40 s on two quiet cores, most of it numba compiling the product kernels cold (the
    wheel's modules have no numba cache yet), as on a user's first product."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])  # no ensurepip: ~10 s less
    py = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
          "-q", "--disable-pip-version-check", str(wheel)])
    site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "borrowed-deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "smoke.py").write_text(SMOKE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = _run([str(py), "smoke.py", str(venv)], cwd=work, env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("SMOKE ")]
    assert line, proc.stdout
    result = json.loads(line[-1][6:])
    assert Path(result["hmat_file"]).resolve().is_relative_to(venv.resolve())
    if importlib.util.find_spec("torch") is None:
        return
    assert result["torch"], "torch is importable here but hmat.nn was not tested in the venv"
