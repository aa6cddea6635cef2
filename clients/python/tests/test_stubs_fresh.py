# The committed stubs (src/hotplane_client/_pb/) are what generate.py makes from proto/ now:
# a proto change without `python clients/python/generate.py` fails here, naming the files.
import filecmp
import importlib.util
import pathlib

HERE = pathlib.Path(__file__).resolve().parents[1]


def test_committed_stubs_match_proto(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", HERE / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path / "_pb")
    committed = HERE / "src" / "hotplane_client" / "_pb"
    def files(root):
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert files(tmp_path / "_pb") == files(committed)
    stale = [f for f in files(committed) if not filecmp.cmp(committed / f, tmp_path / "_pb" / f, shallow=False)]
    assert not stale, f"stale stubs {stale}: run python clients/python/generate.py"
