"""The main job: `python -m zengrad demo` and the seed program in examples/."""
import ast
import pathlib
import subprocess
import sys

from zengrad import demo

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "seed_cnn.py"


def _layer_calls(source: str) -> list[str]:
    """The source of each zg.layers.X(...) call, in order."""
    tree = ast.parse(source)
    return [ast.unparse(node) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("zg.layers.")]


def test_demo_model_is_the_example_model():
    """examples/seed_cnn.py and `zengrad demo` train the same network (no drift between the two)."""
    import inspect
    assert _layer_calls(EXAMPLE.read_text()) == _layer_calls(inspect.getsource(demo.seed_cnn))
    model = demo.seed_cnn()
    model.build((None, 28, 28, 1))
    assert model.count_params() == 225_034


def test_demo_runs_and_learns():
    result = subprocess.run([sys.executable, "-m", "zengrad", "demo", "--verbose", "0", "--threads", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    accuracy = float(last.split("test accuracy ")[1].split(";")[0])
    assert accuracy > 0.6, last  # one epoch on 6,000 images: about 0.75; chance is 0.1


def test_demo_refuses_bad_options():
    result = subprocess.run([sys.executable, "-m", "zengrad", "demo", "--dataset", "cifar"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "--dataset" in result.stderr
