"""nnU-Net's postprocessing.pkl: read with a restricted unpickler, applied as nnU-Net applies it."""

import pickle

import numpy as np
import pytest
import torch

from DKOARSegmentationLib.errors import DKOARError
from DKOARSegmentationLib.model.bundle import load_bundle
from DKOARSegmentationLib.model.loading import load_model
from DKOARSegmentationLib.model.manifest import init_manifest
from DKOARSegmentationLib.model.postprocessing import (
    PostprocessingStep,
    apply_postprocessing,
    parse_postprocessing,
    remove_all_but_largest_component,
)
from DKOARSegmentationLib.model.predict_options import PredictOptions
from DKOARSegmentationLib.model.predictor import predict_labels
from DKOARSegmentationLib.volume import Volume
from Testing.nnunet_factory import make_nnunet_folder, require_nnunetv2

require_nnunetv2()


class RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def blobs(seed=0, shape=(24, 30, 30)):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint8)
    for _ in range(40):
        z, y, x = (rng.integers(0, s - 4) for s in shape)
        size = rng.integers(1, 5)
        labels[z:z + size, y:y + size, x:x + size] = rng.integers(1, 5)
    labels[2:6, 2:6, 2:6] = 2
    labels[6, 6, 6] = 2  # touches the cube corner: one component with 26-connectivity, two with 6
    labels[20:22, 25:27, 25:27] = 3
    labels[10:12, 10:12, 10:12] = 3  # two components of equal size: nnU-Net keeps both
    return labels


@pytest.mark.parametrize("labels_or_regions", [[1, 2, 3, 4], 2, (1, 3), [(1, 2), 4], [3]])
def test_largest_component_removal_is_nnunets(labels_or_regions):
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation as theirs,
    )

    for seed in range(3):
        seg = blobs(seed)
        items = labels_or_regions if isinstance(labels_or_regions, list) else [labels_or_regions]
        ours = remove_all_but_largest_component(seg, [tuple(i) if isinstance(i, tuple) else i for i in items])
        assert np.array_equal(ours, theirs(seg, labels_or_regions))


def test_pickle_written_by_nnunet_is_read_and_applied(tmp_path):
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing as nn_apply
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation as fn,
    )

    fns, kwargs = [fn, fn, fn], [{"labels_or_regions": [1, 2, 3, 4]}, {"labels_or_regions": 3},
                                 {"labels_or_regions": (1, 2)}]
    save_pickle((fns, kwargs), str(tmp_path / "postprocessing.pkl"))
    steps = parse_postprocessing((tmp_path / "postprocessing.pkl").read_bytes())
    assert steps == [PostprocessingStep(fn.__name__, (1, 2, 3, 4)), PostprocessingStep(fn.__name__, (3,)),
                     PostprocessingStep(fn.__name__, ((1, 2),))]
    seg = blobs(5)
    assert np.array_equal(apply_postprocessing(seg, steps), nn_apply(seg, fns, kwargs))


@pytest.mark.parametrize("payload,match", [
    ((RunsCode(),), "builtins.print, which is not one of nnU-Net's post-processing functions"),
    (([pickle.loads], [{}]), "_pickle.loads|pickle.loads"),
    (([np.zeros], [{"labels_or_regions": 1}]), "numpy"),
])
def test_pickle_naming_anything_else_is_refused(payload, match, capsys):
    with pytest.raises(DKOARError, match=f"refused, it names .*({match})"):
        parse_postprocessing(pickle.dumps(payload))
    assert "this would have run" not in capsys.readouterr().out


def test_malformed_postprocessing_is_refused():
    with pytest.raises(DKOARError, match="functions, keyword arguments"):
        parse_postprocessing(pickle.dumps({"a": 1}))
    with pytest.raises(DKOARError, match="labels_or_regions"):
        from nnunetv2.postprocessing.remove_connected_components import (
            remove_all_but_largest_component_from_segmentation as fn,
        )
        parse_postprocessing(pickle.dumps(([fn], [{"labels_or_regions": "1"}])))
    with pytest.raises(DKOARError, match="not a readable"):
        parse_postprocessing(b"\x80\x04garbage")


def test_model_folder_with_postprocessing(tmp_path, capsys):
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import (
        remove_all_but_largest_component_from_segmentation as fn,
    )

    folder = make_nnunet_folder(tmp_path / "m", spacing_zyx=(10.0, 8.0, 8.0), patch_zyx=(16, 32, 32),
                                features=(4, 8, 8), folds=(0,), trainer="nnUNetTrainerNoMirroring", manifest=False)
    all_labels = list(range(1, 35))
    save_pickle(([fn], [{"labels_or_regions": all_labels}]), str(folder / "postprocessing.pkl"))
    init_manifest(folder, "pp", "1", intended_use="tests")
    bundle = load_bundle(folder)
    assert "postprocessing.pkl" in bundle.files
    model = load_model(bundle, torch.device("cpu"))
    assert model.postprocessing == [PostprocessingStep(fn.__name__, tuple(all_labels))]
    rng = np.random.default_rng(0)
    voxels = (rng.normal(0, 400, (20, 32, 32))).astype(np.float32)
    affine = np.diag([8.0, 8.0, 10.0, 1.0])
    ct = Volume(voxels, affine)
    raw = predict_labels(model, ct, options=PredictOptions(mode="nnunet", postprocess=False))
    post = predict_labels(model, ct, options=PredictOptions(mode="nnunet"))
    assert np.array_equal(post, remove_all_but_largest_component(raw, all_labels))

    # a tampered pkl is refused by its hash; a pkl naming os.system by the unpickler, after re-hashing
    (folder / "postprocessing.pkl").write_bytes(pickle.dumps(([fn], [{"labels_or_regions": 1}])))
    with pytest.raises(DKOARError, match="sha256 differs"):
        load_bundle(folder)
    (folder / "postprocessing.pkl").write_bytes(pickle.dumps((RunsCode(),)))
    init_manifest(folder, "pp", "2", intended_use="tests", force=True)
    with pytest.raises(DKOARError, match="refused"):
        load_model(load_bundle(folder), torch.device("cpu"))
    assert "this would have run" not in capsys.readouterr().out
